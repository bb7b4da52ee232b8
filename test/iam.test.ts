// IAM mounts, as efs-utils makes them: the tunnel's client certificate
// carries a SigV4 signature of a "Connect" request, made with the AWS
// credentials that efs-utils would find (root's credentials and config
// files, the ECS agent, the instance's IAM role) and tied to the
// certificate's key. The mount target stand-in asks every client for its
// certificate; each test checks the signature as the mount target would,
// with the secret it knows for the key ID.
import { expect } from 'chai';
import { createHash, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exchange } from './helpers/client.js';
import { commandMissing, Daemon, skipIf, tempDir, waitFor } from './helpers/daemon.js';
import { certFor, daemonConfig, REGION, testCerts } from './helpers/fixtures.js';
import { InstanceMetadataStandIn } from './helpers/instance-metadata.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import { asn1Items, certificateExtensions } from './helpers/pki.js';
import { IAM_AUTH_OID, NOT_BEFORE_MS } from '../daemon/client-cert.js';
import { signApiRequest, signConnect } from '../daemon/sigv4.js';
import type { AttachResult } from '../daemon/mounter.js';
import type { TunnelView } from '../daemon/tunnels.js';

const HOST = '127.0.0.75';
const KEYS = { id: 'AKIAIAMTESTDEFAULT01', secret: 'default/secret+KEY' };
const PROFILE_KEYS = { id: 'ASIAIAMTESTPROFILE02', secret: 'profile-secret', token: 'FwoGZXIvYXdzE+profile/token=' };
const ROLE_KEYS = { id: 'ASIAIAMTESTROLE00003', secret: 'role-secret', token: 'IQoJb3JpZ2luX2Vj+role/token==' };
const TASK_KEYS = { id: 'ASIAIAMTESTTASK00004', secret: 'task-secret', token: 'task+token/x=' };
const WEB_KEYS = { id: 'ASIAIAMTESTWEBID0005', secret: 'web-secret', token: 'web+identity/token=' };
const POD_KEYS = { id: 'ASIAIAMTESTPODID0006', secret: 'pod-secret', token: 'pod+identity/token=' };
const ASSUMED_KEYS = { id: 'ASIAIAMTESTASSUMED07', secret: 'assumed-secret', token: 'assumed+role/token=' };
const CROSS_ROLE = 'arn:aws:iam::210987654321:role/efs-cross';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/efs-web';
const document = (k: { id: string; secret: string; token: string }): string => JSON.stringify({
  Code: 'Success', Type: 'AWS-HMAC', AccessKeyId: k.id, SecretAccessKey: k.secret, Token: k.token, Expiration: new Date(Date.now() + 6 * 3_600_000).toISOString(),
});

/** What a client certificate's efs_client_auth says, read with openssl. */
function iamAuthOf(pem: string): { accessKeyId: string; signature: string; signedAt: Date; token: string | null } {
  const items = asn1Items(certificateExtensions(pem)[IAM_AUTH_OID] ?? '');
  const [, id, sig, time] = items;
  const t = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(time?.value ?? '')!;
  const signedAt = new Date(Date.UTC(2000 + Number(t[1]), Number(t[2]) - 1, Number(t[3]), Number(t[4]), Number(t[5]), Number(t[6])));
  return { accessKeyId: id!.value, signature: sig!.value, signedAt, token: items[5]?.value ?? null };
}

/**
 * The mount target's check: the same Connect request, signed with the secret it knows for the key ID, for the key
 * presented. `clockNow`: signed within two minutes of now (false for a daemon on a faked clock).
 */
function expectSignedBy(pem: string, fsId: string, keys: { id: string; secret: string; token?: string }, clockNow = true): void {
  const auth = iamAuthOf(pem);
  expect(auth.accessKeyId).to.equal(keys.id);
  expect(auth.token).to.equal(keys.token ?? null);
  const keyHash = createHash('sha1').update(new X509Certificate(pem).publicKey.export({ type: 'pkcs1', format: 'der' })).digest('hex');
  const expected = signConnect({ publicKeyHash: keyHash, accessKeyId: keys.id, sessionToken: keys.token ?? null, region: REGION, fsId, date: auth.signedAt }, keys.secret);
  expect(auth.signature, 'a signature the mount target accepts').to.equal(expected);
  if (clockNow) expect(Math.abs(auth.signedAt.getTime() - Date.now())).to.be.below(120_000);
  // Signed when the certificate was made: 15 minutes after the start of its validity.
  expect(auth.signedAt.getTime()).to.equal(new Date(new X509Certificate(pem).validFrom).getTime() + NOT_BEFORE_MS);
}

describe('IAM mounts', function () {
  this.timeout(60_000);
  let daemon: Daemon;
  let target: MountTargetStandIn;
  let imds: InstanceMetadataStandIn;
  let ecs: Server;
  const ecsAsked: string[] = [];
  const assumed: URLSearchParams[] = [];
  let podIdentity = false;
  const podAuthorizations: Array<string | undefined> = [];
  const podToken = join(tempDir('efs-relay-iam-pod-'), 'eks-pod-identity-token');
  const podUri = (): string => `http://${HOST}:${(ecs.address() as AddressInfo).port}/v1/credentials`;
  // AWS STS's stand-in, over TLS with a certificate the daemon trusts through NODE_EXTRA_CA_CERTS (Node's own CAs).
  let sts: Server;
  const stsAsked: Array<{ query: URLSearchParams; accept: string | undefined }> = [];
  const jwt = join(tempDir('efs-relay-iam-jwt-'), 'token');
  const dir = tempDir('efs-relay-iam-');
  const credentialsFile = join(dir, 'credentials');
  const configFile = join(dir, 'config');
  const options = (extra: string): string => `region=${REGION},mounttargetip=${HOST},iam${extra}`;
  const attach = (fsId: string, extra = ''): Promise<AttachResult> => daemon.efsctlJson<AttachResult>('attach', fsId, daemon.mountPoint(fsId), '-o', options(extra));
  const lastCert = (): string => {
    const pem = target.clientCertificates.at(-1);
    expect(pem, 'a client certificate').to.be.a('string');
    return pem!;
  };
  const through = async (port: number): Promise<void> => {
    expect((await exchange(port, 'signed')).received.toString()).to.equal('signed' + ECHO_TRAILER);
  };

  before(async () => {
    target = await new MountTargetStandIn({ host: HOST, port: 2049, cert: certFor(`*.efs.${REGION}.amazonaws.com`), backend: 'echo', askClientCert: true }).start();
    imds = await new InstanceMetadataStandIn({ host: HOST, mode: 'v2', region: REGION }).start();
    ecs = createServer((req, res) => {
      ecsAsked.push(req.url ?? '');
      // EKS Pod Identity's agent, on the same stand-in: it answers only while a test turns it on, and only with the pod's token.
      if (req.url === '/v1/credentials') {
        podAuthorizations.push(req.headers.authorization);
        if (!podIdentity) return void res.writeHead(404).end();
        if (req.headers.authorization !== 'eks-pod-token') return void res.writeHead(401).end();
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(document(POD_KEYS));
      }
      if (req.url === '/v2/credentials/task-1') return void res.writeHead(200, { 'content-type': 'application/json' }).end(document(TASK_KEYS));
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => ecs.listen(0, HOST, resolve));
    const stsCert = certFor('localhost');
    sts = createHttpsServer({ key: stsCert.key, cert: stsCert.cert }, (req, res) => {
      // AssumeRole, for a profile's role_arn: a form POST, signed as STS checks it with the profile build's keys.
      if (req.method === 'POST') {
        let body = '';
        req.on('data', (d: Buffer) => (body += d.toString()));
        req.on('end', () => {
          const form = new URLSearchParams(body);
          const amz = String(req.headers['x-amz-date']);
          const date = new Date(`${amz.slice(0, 4)}-${amz.slice(4, 6)}-${amz.slice(6, 11)}:${amz.slice(11, 13)}:${amz.slice(13, 15)}Z`);
          const expected = signApiRequest({ method: 'POST', url: new URL(`https://${req.headers.host}/`), body, contentType: req.headers['content-type'], region: REGION, service: 'sts', date },
            { accessKeyId: PROFILE_KEYS.id, secretAccessKey: PROFILE_KEYS.secret, sessionToken: PROFILE_KEYS.token }).authorization;
          assumed.push(form);
          if (req.headers.authorization !== expected || form.get('Action') !== 'AssumeRole' || form.get('RoleArn') !== CROSS_ROLE) {
            return void res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ Error: { Code: 'AccessDenied', Message: 'not this caller' } }));
          }
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ AssumeRoleResponse: { AssumeRoleResult: {
            Credentials: { AccessKeyId: ASSUMED_KEYS.id, SecretAccessKey: ASSUMED_KEYS.secret, SessionToken: ASSUMED_KEYS.token, Expiration: Date.now() / 1000 + 3600 },
          } } }));
        });
        return;
      }
      const query = new URL(req.url ?? '/', 'https://localhost').searchParams;
      stsAsked.push({ query, accept: req.headers.accept });
      if (query.get('Action') !== 'AssumeRoleWithWebIdentity' || query.get('RoleArn') !== ROLE_ARN || query.get('WebIdentityToken') !== 'eyJ.web.identity') {
        return void res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ Error: { Code: 'InvalidIdentityToken', Message: 'Couldn\'t retrieve verification key from your identity provider' } }));
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ AssumeRoleWithWebIdentityResponse: { AssumeRoleWithWebIdentityResult: {
        Credentials: { AccessKeyId: WEB_KEYS.id, SecretAccessKey: WEB_KEYS.secret, SessionToken: WEB_KEYS.token, Expiration: Date.now() / 1000 + 3600 },
      } } }));
    });
    await new Promise<void>((resolve) => sts.listen(0, '127.0.0.1', resolve));
    writeFileSync(jwt, 'eyJ.web.identity\n');
    writeFileSync(podToken, 'eks-pod-token\n');
    writeFileSync(credentialsFile, `# root's keys\n[default]\naws_access_key_id = ${KEYS.id}\naws_secret_access_key = ${KEYS.secret}\n`, { mode: 0o600 });
    writeFileSync(configFile, `[default]\nregion = ${REGION}\n\n[profile build]\naws_access_key_id=${PROFILE_KEYS.id}\naws_secret_access_key=${PROFILE_KEYS.secret}\naws_session_token=${PROFILE_KEYS.token}\n`, { mode: 0o600 });
    daemon = await new Daemon(daemonConfig(26500, {
      efs: { metadata_url: imds.url },
      metrics: { listen: '127.0.0.1:19817' },
      iam: {
        credentials_file: credentialsFile, config_file: configFile, ecs_url: `http://${HOST}:${(ecs.address() as AddressInfo).port}`,
        sts_url: `https://localhost:${(sts.address() as AddressInfo).port}/`,
      },
    })).start(undefined, undefined, {
      NODE_EXTRA_CA_CERTS: testCerts().ca.certFile,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: podUri(), AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: podToken,
    });
    // The stand-in of mount.nfs4 talks to the tunnel port before it mounts: the mount proves the data path.
    daemon.mount.behave('mount', { reach: true });
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
    await imds?.stop();
    await new Promise((resolve) => (ecs ? ecs.close(resolve) : resolve(undefined)));
    await new Promise((resolve) => (sts ? sts.close(resolve) : resolve(undefined)));
  });

  it('signs with the [default] profile\'s keys in root\'s credentials file, for the key the tunnel presents, and mounts through it', async () => {
    const r = await attach('fs-0000fa01');
    expect(r.tunnel!.options).to.have.property('iam', null);
    // iam configures the tunnel; mount.nfs4 never sees it.
    expect(r.command[4]).to.not.match(/\biam\b/);
    await through(r.tunnel!.port);
    expectSignedBy(lastCert(), 'fs-0000fa01', KEYS);
    // status says where the credentials came from (never the key), and until when the certificate is good.
    const cert = r.tunnel!.client_certificate!;
    expect([cert.access_point, cert.iam_credentials]).to.deep.equal([null, 'credentials:default']);
    expect(new Date(cert.not_after).getTime()).to.equal(new Date(new X509Certificate(lastCert()).validTo).getTime());
    expect(JSON.stringify(await daemon.efsctlJson('status', 'fs-0000fa01'))).to.not.contain(KEYS.secret);
    // For the alert that fires when renewals fail (EFSRelayClientCertificateNotRenewed).
    expect(Number(await daemon.scrapedValue('efs_relay_client_cert_expiry_timestamp_seconds{fs_id="fs-0000fa01"}'))).to.equal(Date.parse(cert.not_after) / 1000);
  });

  it('signs with the profile awsprofile= names, from the config file\'s [profile NAME], with its session token', async () => {
    const r = await attach('fs-0000fa02', ',awsprofile=build');
    expect(r.tunnel!.client_certificate?.iam_credentials).to.equal('config:build');
    await through(r.tunnel!.port);
    expectSignedBy(lastCert(), 'fs-0000fa02', PROFILE_KEYS);
  });

  it('signs with the role a profile assumes at AWS STS (role_arn, source_profile), as botocore does for efs-utils', async () => {
    const before = readFileSync(configFile, 'utf8');
    writeFileSync(configFile, `${before}\n[profile cross]\nrole_arn = ${CROSS_ROLE}\nsource_profile = build\nexternal_id = efs-42\n`);
    try {
      const r = await attach('fs-0000fa0c', ',awsprofile=cross');
      expect(r.tunnel!.client_certificate?.iam_credentials).to.equal('named_profile:cross');
      await through(r.tunnel!.port);
      expectSignedBy(lastCert(), 'fs-0000fa0c', ASSUMED_KEYS);
      expect([assumed.at(-1)?.get('RoleArn'), assumed.at(-1)?.get('ExternalId')]).to.deep.equal([CROSS_ROLE, 'efs-42']);
    } finally {
      writeFileSync(configFile, before);
    }
  });

  it('fails with NO_AWS_CREDENTIALS in efs-utils\' words when the named profile has no keys, and makes no tunnel', async () => {
    const r = await daemon.efsctl('attach', 'fs-0000fa03', daemon.mountPoint('fs-0000fa03'), '-o', options(',awsprofile=nobody'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('NO_AWS_CREDENTIALS').and.to.contain(`AWS security credentials not found in ${credentialsFile} or ${configFile} under named profile [nobody]`);
    const list = await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list');
    expect(list.tunnels.map((t) => t.fs_id)).to.not.include('fs-0000fa03');
  });

  it('refuses a second mount of the file system without IAM: its tunnel\'s certificate carries IAM for every mount', async () => {
    const r = await daemon.efsctl('add', 'fs-0000fa01', '-o', `region=${REGION},mounttargetip=${HOST}`);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('BAD_OPTION').and.to.contain('fs-0000fa01 already has a tunnel with IAM authorization, not without IAM authorization');
  });

  it('takes the ECS task\'s credentials from the ECS agent at the path awscredsuri= gives', async () => {
    const r = await attach('fs-0000fa04', ',awscredsuri=/v2/credentials/task-1');
    await through(r.tunnel!.port);
    expectSignedBy(lastCert(), 'fs-0000fa04', TASK_KEYS);
    expect(r.tunnel!.client_certificate?.iam_credentials).to.equal('ecs:/v2/credentials/task-1');
    expect(ecsAsked).to.include('/v2/credentials/task-1');
  });

  it('exchanges the web identity token jwtpath= names for the credentials of the role rolearn= names, at AWS STS, and signs with them', async () => {
    const r = await attach('fs-0000fa07', `,rolearn=${ROLE_ARN},jwtpath=${jwt}`);
    await through(r.tunnel!.port);
    expectSignedBy(lastCert(), 'fs-0000fa07', WEB_KEYS);
    expect(r.tunnel!.client_certificate?.iam_credentials).to.equal(`webidentity:${ROLE_ARN},${jwt}`);
    const asked = stsAsked.at(-1)!;
    expect(Object.fromEntries(asked.query)).to.deep.equal({ Version: '2011-06-15', Action: 'AssumeRoleWithWebIdentity', RoleArn: ROLE_ARN, RoleSessionName: 'efs-mount-helper', WebIdentityToken: 'eyJ.web.identity' });
    expect(asked.accept).to.equal('application/json');
  });

  it('fails with NO_AWS_CREDENTIALS and STS\'s reason when STS refuses the web identity token', async () => {
    const stale = join(tempDir('efs-relay-iam-jwt-'), 'stale-token');
    writeFileSync(stale, 'eyJ.expired');
    const r = await daemon.efsctl('attach', 'fs-0000fa08', daemon.mountPoint('fs-0000fa08'), '-o', options(`,rolearn=${ROLE_ARN},jwtpath=${stale}`));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('NO_AWS_CREDENTIALS').and.to.contain(`web identity of rolearn= and jwtpath=: Unsuccessful retrieval of AWS security credentials at https://localhost:${(sts.address() as AddressInfo).port}/ (HTTP 400 for role ${ROLE_ARN}: InvalidIdentityToken (Couldn't retrieve verification key from your identity provider))`);
  });

  it('with no keys in root\'s files, signs with the instance\'s IAM role credentials from instance metadata (IMDSv2)', async () => {
    rmSync(credentialsFile);
    writeFileSync(configFile, `[default]\nregion = ${REGION}\n`);
    imds.role = { name: 'efs-mounter', document: document(ROLE_KEYS) };
    const r = await attach('fs-0000fa05');
    await through(r.tunnel!.port);
    expectSignedBy(lastCert(), 'fs-0000fa05', ROLE_KEYS);
    expect(r.tunnel!.client_certificate?.iam_credentials).to.equal('metadata:efs-mounter');
    const asked = imds.requests.filter((q) => q.path.startsWith('/latest/meta-data/iam/security-credentials/'));
    expect(asked.map((q) => q.path)).to.include.members(['/latest/meta-data/iam/security-credentials/', '/latest/meta-data/iam/security-credentials/efs-mounter']);
    expect(asked.every((q) => q.token === imds.token), 'with a session token').to.equal(true);
  });

  it('signs with EKS Pod Identity\'s credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI, asked with the token file\'s token) before the instance role, as efs-utils', async () => {
    imds.role = { name: 'efs-mounter', document: document(ROLE_KEYS) };
    podIdentity = true;
    try {
      const r = await attach('fs-0000fa0b');
      await through(r.tunnel!.port);
      expectSignedBy(lastCert(), 'fs-0000fa0b', POD_KEYS);
      expect(r.tunnel!.client_certificate?.iam_credentials).to.equal(`podidentity:${podUri()},${podToken}`);
      expect(podAuthorizations.at(-1)).to.equal('eks-pod-token');
    } finally {
      podIdentity = false;
    }
  });

  it('says what it tried when there are no credentials anywhere, and makes no tunnel', async () => {
    imds.role = undefined;
    const r = await daemon.efsctl('attach', 'fs-0000fa06', daemon.mountPoint('fs-0000fa06'), '-o', options(''));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('NO_AWS_CREDENTIALS')
      .and.to.contain(`AWS Access Key ID and Secret Access Key are not found in AWS credentials file (${credentialsFile}), config file (${configFile})`)
      .and.to.contain('no AWS_CONTAINER_CREDENTIALS_RELATIVE_URI')
      .and.to.contain(`EKS Pod Identity: Unsuccessful retrieval of AWS security credentials from Container Credentials URI at ${podUri()} (HTTP 404)`)
      .and.to.contain(`no IAM role: instance metadata at ${imds.url} answered HTTP 404`);
  });

  it('keeps an IAM tunnel\'s record through a restart without credentials, says why it waits, lets its CA bundle reload for the others meanwhile, and listens once credentials are back', async () => {
    // A tunnel of its own CA bundle that waits for credentials after the restart, beside one that needs none.
    const bundle = join(tempDir('efs-relay-iam-ca-'), 'cas.pem');
    writeFileSync(bundle, testCerts().ca.cert);
    imds.role = { name: 'efs-mounter', document: document(ROLE_KEYS) };
    await attach('fs-0000fa09', `,cafile=${bundle}`);
    imds.role = undefined;
    const plain = await daemon.efsctlJson<{ tunnel: TunnelView }>('add', 'fs-0000fa0a', '-o', `region=${REGION},mounttargetip=${HOST},cafile=${bundle}`);
    await daemon.stop();
    await daemon.start();
    const waiting = await waitFor('fs-0000fa05 to say why it waits', async () => {
      const t = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((x) => x.fs_id === 'fs-0000fa05');
      return t?.last_error?.code === 'NO_AWS_CREDENTIALS' ? t : null;
    }, 10_000);
    expect(waiting.state).to.not.equal('listening');
    expect(daemon.logs.includes('tunnel.start_failed')).to.equal(true);
    // The bundle changes while fs-0000fa09 waits: the tunnel that runs takes it; the waiting one takes it on its retry.
    writeFileSync(`${bundle}.new`, `${testCerts().ca.cert}\n`);
    renameSync(`${bundle}.new`, bundle);
    await waitFor('the bundle to be read again', () => daemon.logs.includes('tls.ca_reloaded'), 10_000);
    expect(daemon.logs).to.match(/tls\.ca_reloaded .*tunnels=1\b/);
    expect((await exchange(plain.tunnel.port, 'after')).received.toString()).to.equal('after' + ECHO_TRAILER);
    imds.role = { name: 'efs-mounter', document: document(ROLE_KEYS) };
    const back = await waitFor('fs-0000fa05 to listen again', async () => {
      const t = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((x) => x.fs_id === 'fs-0000fa05');
      return t?.state === 'listening' ? t : null;
    }, 15_000);
    await through(back.port);
    expectSignedBy(lastCert(), 'fs-0000fa05', ROLE_KEYS);
  });
});

// The renewal that keeps an IAM tunnel working past its certificate's 3 hours, on the daemon's own timers: the
// daemon runs under libfaketime with its clock 720 times as fast, so its 10-minute check comes about every 0.8 s
// and a certificate is due for renewal (2 hours left) about 5 s after it is made.
describe('IAM certificate renewal, on a clock 720 times as fast', function () {
  this.timeout(90_000);
  let daemon: Daemon;
  let target: MountTargetStandIn;
  const credentialsFile = join(tempDir('efs-relay-iam-renew-'), 'credentials');
  const FIRST = { id: 'AKIARENEWFIRST000001', secret: 'first-secret' };
  const ROTATED = { id: 'AKIARENEWROTATED0002', secret: 'rotated-secret', token: 'rotated+token/=' };
  const FS = 'fs-0000fb01';
  const presented = async (port: number): Promise<string> => {
    const before = target.clientCertificates.length;
    expect((await exchange(port, 'renewed')).received.toString()).to.equal('renewed' + ECHO_TRAILER);
    expect(target.clientCertificates.length).to.equal(before + 1);
    return target.clientCertificates.at(-1)!;
  };

  before(async function () {
    skipIf(this, await commandMissing('faketime', 'apt-get install faketime'));
    target = await new MountTargetStandIn({ host: HOST, port: 2049, cert: certFor(`*.efs.${REGION}.amazonaws.com`), backend: 'echo', askClientCert: true }).start();
    writeFileSync(credentialsFile, `[default]\naws_access_key_id = ${FIRST.id}\naws_secret_access_key = ${FIRST.secret}\n`, { mode: 0o600 });
    // Every wait the daemon keeps is in faked seconds: an hour of them is 5 real seconds.
    daemon = await new Daemon(daemonConfig(26550, {
      relay: { connect_timeout: 3600, close_timeout: 3600 },
      health: { probe_interval: 0, trust_check_interval: 0 },
      mount: { poll_interval: 3600 },
      iam: { credentials_file: credentialsFile, config_file: join(tempDir('efs-relay-iam-renew-'), 'config') },
    })).start(undefined, undefined, { LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1', FAKETIME: '+0 x720', FAKETIME_DONT_RESET: '1' });
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
  });

  it('renews the certificate with the keys as they are then, logs it, and keeps presenting the last one while renewals find no credentials', async () => {
    const add = await daemon.efsctlJson<{ tunnel: TunnelView }>('add', FS, '-o', `region=${REGION},mounttargetip=${HOST},iam`);
    const first = await presented(add.tunnel.port);
    expectSignedBy(first, FS, FIRST, false);

    // The keys are rotated: the next renewal signs with the new ones.
    writeFileSync(credentialsFile, `[default]\naws_access_key_id = ${ROTATED.id}\naws_secret_access_key = ${ROTATED.secret}\naws_session_token = ${ROTATED.token}\n`);
    await waitFor('a renewal', () => daemon.logs.includes('tunnel.client_cert_renewed'), 30_000);
    expect(daemon.logs).to.match(/tunnel\.client_cert_renewed fs=fs-0000fb01 code=- msg="new connections present a new client certificate for IAM authorization \(credentials from credentials:default\), valid for 3 hours"/);
    const renewed = await presented(add.tunnel.port);
    expectSignedBy(renewed, FS, ROTATED, false);
    expect(new Date(new X509Certificate(renewed).validFrom).getTime()).to.be.above(new Date(new X509Certificate(first).validFrom).getTime() + 3_600_000);

    // The keys are gone: renewals fail and say why, and new connections still present the last certificate.
    rmSync(credentialsFile);
    await waitFor('a failed renewal', () => daemon.logs.includes('tunnel.client_cert_renew_failed'), 30_000);
    expect(daemon.logs).to.match(/error tunnel\.client_cert_renew_failed fs=fs-0000fb01 code=NO_AWS_CREDENTIALS msg="AWS Access Key ID and Secret Access Key are not found .*; new connections present the certificate made before, tried again in 10 minutes"/);
    expect(await presented(add.tunnel.port)).to.equal(renewed);
    const status = await daemon.efsctlJson<TunnelView & { history: Array<{ event: string; code?: string }> }>('status', FS);
    expect(status.history.map((h) => [h.event, h.code])).to.deep.include(['client_cert_renew_failed', 'NO_AWS_CREDENTIALS']);
  });
});

