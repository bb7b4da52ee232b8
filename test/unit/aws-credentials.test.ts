import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { awsCredentials, type CredentialPlaces } from '../../daemon/aws-credentials.js';
import { RelayError } from '../../daemon/errors.js';
import { tempDir } from '../helpers/daemon.js';

describe('AWS credentials for IAM mounts, from root\'s files', () => {
  const places = (files: { credentials?: string; config?: string }, env: Record<string, string> = {}): CredentialPlaces => {
    const sub = tempDir('efs-relay-aws-creds-');
    const at = { credentialsFile: join(sub, 'credentials'), configFile: join(sub, 'config') };
    if (files.credentials !== undefined) writeFileSync(at.credentialsFile, files.credentials);
    if (files.config !== undefined) writeFileSync(at.configFile, files.config);
    // No ECS agent or instance metadata is asked in these tests.
    return { ...at, ecsUrl: 'http://127.0.0.1:1', metadataUrl: '', stsUrl: 'https://127.0.0.1:1/', env };
  };
  const refusal = async (p: Promise<unknown>): Promise<RelayError> => {
    try {
      await p;
    } catch (err) {
      return err as RelayError;
    }
    throw new Error('expected NO_AWS_CREDENTIALS');
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
