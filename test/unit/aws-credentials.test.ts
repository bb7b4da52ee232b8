import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { awsCredentials, type CredentialPlaces } from '../../daemon/aws-credentials.js';
import { RelayError } from '../../daemon/errors.js';
import { signApiRequest } from '../../daemon/sigv4.js';
import { tempDir } from '../helpers/daemon.js';

const refusal = async (p: Promise<unknown>): Promise<RelayError> => {
  try {
    await p;
  } catch (err) {
    return err as RelayError;
  }
  throw new Error('expected NO_AWS_CREDENTIALS');
};

describe('AWS credentials for IAM mounts, from root\'s files', () => {
  const places = (files: { credentials?: string; config?: string }, env: Record<string, string> = {}): CredentialPlaces => {
    const sub = tempDir('efs-relay-aws-creds-');
    const at = { credentialsFile: join(sub, 'credentials'), configFile: join(sub, 'config') };
    if (files.credentials !== undefined) writeFileSync(at.credentialsFile, files.credentials);
    if (files.config !== undefined) writeFileSync(at.configFile, files.config);
    // No ECS agent or instance metadata is asked in these tests.
    return { ...at, ecsUrl: 'http://127.0.0.1:1', metadataUrl: '', region: 'us-east-1', stsUrl: 'https://127.0.0.1:1/', env };
  };

  it('reads keys as botocore writes them: comments, spaces around =, keys in any case, and an indented nested value that is not a key', async () => {
    const c = await awsCredentials({ iam: null }, places({
      credentials: '# written by aws configure\n[default]\nAWS_ACCESS_KEY_ID=AKIAONE\naws_secret_access_key   =  s3cr3t=with=equals\n; a comment\ns3 =\n    aws_session_token = nested\n',
    }));
    expect(c).to.deep.equal({ accessKeyId: 'AKIAONE', secretAccessKey: 's3cr3t=with=equals', sessionToken: null, expiration: null, source: 'credentials:default' });
  });

  it('takes the profile from AWS_PROFILE in the daemon\'s environment when awsprofile= is not given, and awsprofile= over it', async () => {
    const files = { credentials: '[a]\naws_access_key_id=AKIAA\naws_secret_access_key=x\n[b]\naws_access_key_id=AKIAB\naws_secret_access_key=y\naws_session_token=t\n' };
    expect((await awsCredentials({ iam: null }, places(files, { AWS_PROFILE: 'a' }))).source).to.equal('credentials:a');
    const b = await awsCredentials({ iam: null, awsprofile: 'b' }, places(files, { AWS_PROFILE: 'a' }));
    expect([b.accessKeyId, b.sessionToken, b.source]).to.deep.equal(['AKIAB', 't', 'credentials:b']);
  });

  it('reads a named profile from the config file as [profile NAME], and as [NAME] the way efs-utils does', async () => {
    for (const head of ['[profile dev]', '[dev]']) {
      const c = await awsCredentials({ iam: null, awsprofile: 'dev' }, places({ config: `${head}\naws_access_key_id=AKIADEV\naws_secret_access_key=z\n` }));
      expect([c.accessKeyId, c.source]).to.deep.equal(['AKIADEV', 'config:dev']);
    }
  });

  it('says that [default] was chosen for its key ID when it has no secret', async () => {
    const p = places({ credentials: '[default]\naws_access_key_id=AKIAHALF\n' });
    const e = await refusal(awsCredentials({ iam: null }, p));
    expect(e.message).to.contain(`under named profile [default] (named by its aws_access_key_id in ${p.credentialsFile})`);
  });

  it('refuses a profile with a key ID but no secret, naming the profile and both files', async () => {
    const p = places({ credentials: '[half]\naws_access_key_id=AKIAHALF\n' });
    const e = await refusal(awsCredentials({ iam: null, awsprofile: 'half' }, p));
    expect(e.code).to.equal('NO_AWS_CREDENTIALS');
    expect(e.message).to.contain(`AWS security credentials not found in ${p.credentialsFile} or ${p.configFile} under named profile [half] (named by awsprofile=)`);
  });

  it('says which step found nothing when no file has keys, there is no ECS URI and instance metadata is off', async () => {
    const e = await refusal(awsCredentials({ iam: null }, places({})));
    expect(e.code).to.equal('NO_AWS_CREDENTIALS');
    expect(e.message).to.match(/no \[default\] profile with keys in .*; no AWS_CONTAINER_CREDENTIALS_RELATIVE_URI in efs-relayd's environment; instance metadata is not asked \(efs.metadata_url is ""\)$/);
  });

  it('looks no profile up for a web identity, and says why each web identity gave nothing: a token file it cannot read, an STS it cannot reach', async () => {
    const files = { credentials: '[default]\naws_access_key_id=AKIA\naws_secret_access_key=s\n' };
    const token = join(tempDir('efs-relay-aws-creds-'), 'token');
    writeFileSync(token, 'eyJ.token');
    const e = await refusal(awsCredentials({ iam: null, rolearn: 'arn:aws:iam::123456789012:role/r', jwtpath: '/nonexistent/token' },
      places(files, { AWS_ROLE_ARN: 'arn:aws:iam::123456789012:role/env', AWS_WEB_IDENTITY_TOKEN_FILE: token })));
    expect(e.code).to.equal('NO_AWS_CREDENTIALS');
    expect(e.message).to.not.contain('no [default] profile');
    expect(e.message).to.contain('web identity of rolearn= and jwtpath=: Error reading token file /nonexistent/token: ENOENT')
      .and.to.match(/web identity of AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE: Unable to reach https:\/\/127\.0\.0\.1:1\/ to retrieve AWS security credentials \(.*\)/);
  });

  it('says why EKS Pod Identity gave nothing: a token file it cannot read, a token with a line break, an agent it cannot reach', async () => {
    const dir = tempDir('efs-relay-aws-creds-pod-');
    const pod = (tokenFile: string): CredentialPlaces => places({}, { AWS_CONTAINER_CREDENTIALS_FULL_URI: 'http://127.0.0.1:1/v1/credentials', AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile });
    let e = await refusal(awsCredentials({ iam: null }, pod(join(dir, 'missing'))));
    expect(e.message).to.contain(`; EKS Pod Identity: Error reading the AWS container authorization token file ${join(dir, 'missing')}: ENOENT`);
    writeFileSync(join(dir, 'two-lines'), 'first\nAuthorization: second\n');
    e = await refusal(awsCredentials({ iam: null }, pod(join(dir, 'two-lines'))));
    expect(e.message).to.contain(`; EKS Pod Identity: The AWS container authorization token in ${join(dir, 'two-lines')} is empty or has a line break`);
    writeFileSync(join(dir, 'token'), 'pod-token\n');
    e = await refusal(awsCredentials({ iam: null }, pod(join(dir, 'token'))));
    expect(e.message).to.match(/; EKS Pod Identity: Unable to reach Container Credentials URI at http:\/\/127\.0\.0\.1:1\/v1\/credentials \(.*\); instance metadata is not asked/);
  });

  it('names the ECS agent\'s address when awscredsuri= cannot be reached, and tries nothing else', async () => {
    const e = await refusal(awsCredentials({ iam: null, awscredsuri: '/v2/credentials/x' }, places({ credentials: '[default]\naws_access_key_id=AKIA\naws_secret_access_key=s\n' })));
    expect(e.code).to.equal('NO_AWS_CREDENTIALS');
    expect(e.message).to.match(/^Unable to reach http:\/\/127\.0\.0\.1:1\/v2\/credentials\/x to retrieve AWS security credentials \(.*\); awscredsuri= names where the ECS agent keeps the task's credentials$/);
  });
});

// A profile that assumes a role, as botocore does it for efs-utils: AssumeRole at an STS stand-in on loopback that
// checks the SigV4 signature as STS would, with the secret it knows for the caller's key ID.
describe('AWS credentials of a profile that assumes a role', function () {
  this.timeout(20_000);
  const HOST = '127.0.0.76';
  const PORT = 18104;
  const SECRETS: Record<string, string> = { AKIASOURCE: 'source-secret', ASIAMIDDLE: 'middle-secret' };
  const asked: Array<{ form: URLSearchParams; token: string | undefined; signedBy: string }> = [];
  let sts: Server;
  const places = (config: string, credentials = '', env: Record<string, string> = {}): CredentialPlaces => {
    const sub = tempDir('efs-relay-aws-role-');
    writeFileSync(join(sub, 'credentials'), credentials);
    writeFileSync(join(sub, 'config'), config);
    return { credentialsFile: join(sub, 'credentials'), configFile: join(sub, 'config'), ecsUrl: 'http://127.0.0.1:1', metadataUrl: '', region: 'eu-west-1', stsUrl: `http://${HOST}:${PORT}/`, env };
  };

  before(async () => {
    sts = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const auth = req.headers.authorization ?? '';
        const keyId = /Credential=([^/]+)\//.exec(auth)?.[1] ?? '';
        const amz = req.headers['x-amz-date'] as string;
        const date = new Date(`${amz.slice(0, 4)}-${amz.slice(4, 6)}-${amz.slice(6, 11)}:${amz.slice(11, 13)}:${amz.slice(13, 15)}Z`);
        const token = req.headers['x-amz-security-token'] as string | undefined;
        const expected = signApiRequest({ method: 'POST', url: new URL(`http://${req.headers.host}/`), body, contentType: req.headers['content-type'], region: 'eu-west-1', service: 'sts', date },
          { accessKeyId: keyId, secretAccessKey: SECRETS[keyId] ?? '?', sessionToken: token ?? null }).authorization;
        if (auth !== expected || form.get('Action') !== 'AssumeRole') {
          return void res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ Error: { Code: 'SignatureDoesNotMatch', Message: 'The request signature we calculated does not match' } }));
        }
        asked.push({ form, token, signedBy: keyId });
        const role = form.get('RoleArn') ?? '';
        const id = role.endsWith('/middle') ? 'ASIAMIDDLE' : 'ASIAFINAL';
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ AssumeRoleResponse: { AssumeRoleResult: {
          Credentials: { AccessKeyId: id, SecretAccessKey: SECRETS[id] ?? 'final-secret', SessionToken: `${id}-token`, Expiration: Date.now() / 1000 + 3600 },
        } } }));
      });
    });
    await new Promise<void>((resolve) => sts.listen(PORT, HOST, resolve));
  });
  after(async () => {
    await new Promise((resolve) => sts.close(resolve));
  });

  it('assumes role_arn with its source_profile\'s keys, signed as STS checks it, with external_id, role_session_name and duration_seconds', async () => {
    const c = await awsCredentials({ iam: null, awsprofile: 'cross' }, places(
      '[profile cross]\nrole_arn = arn:aws:iam::123456789012:role/efs\nsource_profile = base\nexternal_id = ext-42\nrole_session_name = efs-mounts\nduration_seconds = 1800\n',
      '[base]\naws_access_key_id = AKIASOURCE\naws_secret_access_key = source-secret\n',
    ));
    expect([c.accessKeyId, c.secretAccessKey, c.sessionToken, c.source]).to.deep.equal(['ASIAFINAL', 'final-secret', 'ASIAFINAL-token', 'named_profile:cross']);
    expect(c.expiration).to.be.instanceOf(Date);
    const q = asked.at(-1)!;
    expect([q.signedBy, q.token, q.form.get('RoleArn'), q.form.get('ExternalId'), q.form.get('RoleSessionName'), q.form.get('DurationSeconds'), q.form.get('Version')])
      .to.deep.equal(['AKIASOURCE', undefined, 'arn:aws:iam::123456789012:role/efs', 'ext-42', 'efs-mounts', '1800', '2011-06-15']);
  });

  it('chains roles: a source_profile that assumes a role of its own signs with that role\'s temporary credentials and token', async () => {
    const c = await awsCredentials({ iam: null, awsprofile: 'final' }, places(
      '[profile final]\nrole_arn = arn:aws:iam::210987654321:role/final\nsource_profile = middle\n[profile middle]\nrole_arn = arn:aws:iam::123456789012:role/middle\nsource_profile = base\n',
      '[base]\naws_access_key_id = AKIASOURCE\naws_secret_access_key = source-secret\n',
    ));
    expect(c.source).to.equal('named_profile:final');
    const [first, second] = asked.slice(-2);
    expect([first!.signedBy, first!.form.get('RoleArn')]).to.deep.equal(['AKIASOURCE', 'arn:aws:iam::123456789012:role/middle']);
    expect([second!.signedBy, second!.token, second!.form.get('RoleArn')]).to.deep.equal(['ASIAMIDDLE', 'ASIAMIDDLE-token', 'arn:aws:iam::210987654321:role/final']);
    expect(first!.form.get('RoleSessionName')).to.match(/^botocore-session-\d+$/);
  });

  it('says why a role cannot be assumed: STS\'s refusal, a loop, an MFA code, no source', async () => {
    let e = await refusal(awsCredentials({ iam: null, awsprofile: 'cross' }, places(
      '[profile cross]\nrole_arn = arn:aws:iam::123456789012:role/efs\nsource_profile = base\n', '[base]\naws_access_key_id = AKIAUNKNOWN\naws_secret_access_key = wrong\n')));
    expect(e.message).to.equal(`AWS STS at http://${HOST}:${PORT}/ did not let credentials:base assume role arn:aws:iam::123456789012:role/efs of profile [cross] (HTTP 403: SignatureDoesNotMatch (The request signature we calculated does not match)) (named by awsprofile=)`);
    e = await refusal(awsCredentials({ iam: null, awsprofile: 'a' }, places('[profile a]\nrole_arn = arn:aws:iam::123456789012:role/a\nsource_profile = b\n[profile b]\nrole_arn = arn:aws:iam::123456789012:role/b\nsource_profile = a\n')));
    expect(e.message).to.contain('the profiles a → b → a chain roles in a loop or deeper than 4');
    e = await refusal(awsCredentials({ iam: null, awsprofile: 'm' }, places('[profile m]\nrole_arn = arn:aws:iam::123456789012:role/m\nsource_profile = base\nmfa_serial = arn:aws:iam::123456789012:mfa/me\n')));
    expect(e.message).to.contain('profile [m] asks for an MFA code (mfa_serial), which a daemon cannot give');
    e = await refusal(awsCredentials({ iam: null, awsprofile: 'n' }, places('[profile n]\nrole_arn = arn:aws:iam::123456789012:role/n\n')));
    expect(e.message).to.contain('profile [n] assumes role arn:aws:iam::123456789012:role/n, but it names neither source_profile nor credential_source');
    e = await refusal(awsCredentials({ iam: null, awsprofile: 'env' }, places('[profile env]\nrole_arn = arn:aws:iam::123456789012:role/n\ncredential_source = Environment\n')));
    expect(e.message).to.contain('but credential_source Environment, but no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in efs-relayd\'s environment');
  });

  it('signs with the daemon\'s environment keys for credential_source = Environment', async () => {
    const c = await awsCredentials({ iam: null, awsprofile: 'env' }, places('[profile env]\nrole_arn = arn:aws:iam::123456789012:role/env\ncredential_source = Environment\n', '',
      { AWS_ACCESS_KEY_ID: 'AKIASOURCE', AWS_SECRET_ACCESS_KEY: 'source-secret' }));
    expect([c.source, asked.at(-1)!.signedBy]).to.deep.equal(['named_profile:env', 'AKIASOURCE']);
  });
});
