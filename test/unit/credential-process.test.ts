// A profile's credential_process, run as botocore runs it: a real program, root's alone, whose JSON is the profile's
// credentials.
import { expect } from 'chai';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { awsCredentials, type CredentialPlaces } from '../../daemon/aws-credentials.js';
import { splitCommand } from '../../daemon/credential-process.js';
import { RelayError } from '../../daemon/errors.js';
import { tempDir } from '../helpers/daemon.js';

describe('AWS credentials of a profile\'s credential_process', () => {
  const dir = tempDir('efs-relay-cred-process-');
  const places = (config: string): CredentialPlaces => {
    const sub = tempDir('efs-relay-cred-process-files-');
    writeFileSync(join(sub, 'credentials'), '');
    writeFileSync(join(sub, 'config'), config);
    return { credentialsFile: join(sub, 'credentials'), configFile: join(sub, 'config'), ecsUrl: 'http://127.0.0.1:1', metadataUrl: '', region: 'us-east-1', stsUrl: 'https://127.0.0.1:1/', env: {} };
  };
  /** A program that prints `output` and records its arguments, one per line. */
  const program = (name: string, output: string, exitCode = 0): string => {
    const file = join(dir, name);
    writeFileSync(file, `#!/bin/sh\nprintf '%s\\n' "$@" > ${file}.args\ncat <<'JSON'\n${output}\nJSON\nexit ${exitCode}\n`, { mode: 0o755 });
    return file;
  };
  const refusal = async (p: Promise<unknown>): Promise<RelayError> => {
    const e = await p.then(() => null, (err: unknown) => err);
    expect(e).to.be.instanceOf(RelayError);
    return e as RelayError;
  };

  it('splits the command line as a shell would: quotes and backslashes, no expansion', () => {
    expect(splitCommand(`/bin/get "a b" 'c $HOME' d\\ e "x\\"y" ''`)).to.deep.equal(['/bin/get', 'a b', 'c $HOME', 'd e', 'x"y', '']);
    expect(splitCommand('/bin/get "unclosed')).to.equal(null);
  });

  it('signs with what the program prints (Version 1), its arguments as written, and says named_profile:NAME', async () => {
    const exp = new Date(Date.now() + 3_600_000).toISOString();
    const bin = program('vault', JSON.stringify({ Version: 1, AccessKeyId: 'ASIAPROCESS', SecretAccessKey: 'process-secret', SessionToken: 'process-token', Expiration: exp }));
    const c = await awsCredentials({ iam: null, awsprofile: 'vault' }, places(`[profile vault]\ncredential_process = ${bin} --role "efs mounts"\n`));
    expect(c).to.deep.equal({ accessKeyId: 'ASIAPROCESS', secretAccessKey: 'process-secret', sessionToken: 'process-token', expiration: new Date(exp), source: 'named_profile:vault' });
    expect(readFileSync(`${bin}.args`, 'utf8')).to.equal('--role\nefs mounts\n');
  });

  it('runs nothing that another user than root could have chosen: a program by relative name, or one every user can change', async () => {
    let e = await refusal(awsCredentials({ iam: null, awsprofile: 'p' }, places('[profile p]\ncredential_process = get-creds\n')));
    expect(e.message).to.contain('credential_process of profile [p] names its program as "get-creds": efs-relayd runs it as root, so it must be an absolute path');
    const bin = program('open', JSON.stringify({ Version: 1, AccessKeyId: 'A', SecretAccessKey: 'B' }));
    chmodSync(bin, 0o777);
    e = await refusal(awsCredentials({ iam: null, awsprofile: 'p' }, places(`[profile p]\ncredential_process = ${bin}\n`)));
    expect(e.message).to.match(new RegExp(`^credential_process of profile \\[p\\] is not run, since efs-relayd would run it as root: ${bin.replaceAll('/', '\\/')} is writable by every user`));
  });

  it('says why a program gave nothing: it failed (with its stderr), printed no JSON, or another Version', async () => {
    const failing = join(dir, 'failing');
    writeFileSync(failing, '#!/bin/sh\necho "token expired, run aws sso login" >&2\nexit 3\n', { mode: 0o755 });
    let e = await refusal(awsCredentials({ iam: null, awsprofile: 'p' }, places(`[profile p]\ncredential_process = ${failing}\n`)));
    expect(e.message).to.match(/^credential_process of profile \[p\] failed: Command failed: .*: token expired, run aws sso login \(named by awsprofile=\)$/);
    e = await refusal(awsCredentials({ iam: null, awsprofile: 'p' }, places(`[profile p]\ncredential_process = ${program('text', 'not json')}\n`)));
    expect(e.message).to.contain('credential_process of profile [p] did not print JSON');
    e = await refusal(awsCredentials({ iam: null, awsprofile: 'p' }, places(`[profile p]\ncredential_process = ${program('v2', '{"Version": 2}')}\n`)));
    expect(e.message).to.contain('credential_process of profile [p] printed Version 2, not 1');
  });
});
