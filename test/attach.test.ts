// efsctl attach / detach and stop with mounts, against the recording mount
// stand-in; plus one attach whose recorded mount line is proven to point at
// a working tunnel by moving a file through it with nfs-cp.
import { expect } from 'chai';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { release } from 'node:os';
import { join } from 'node:path';
import { Daemon, skipIf, sleep, waitFor } from './helpers/daemon.js';
import { expectPortFree, expectPortTaken } from './helpers/client.js';
import { startNfsStack, type NfsStack } from './helpers/stack.js';
import { FS_ID, FS_NAME, daemonConfig, testCerts } from './helpers/fixtures.js';
import { MountTargetStandIn } from './helpers/mount-target.js';
import { ERRORS } from '../daemon/errors.js';
import { kernelNeedsReadahead } from '../daemon/readahead.js';
import { nfsCatSha256, nfsCp, requireNfs, sha256File } from './helpers/nfs.js';
import type { AttachResult } from '../daemon/mounter.js';
import type { DoctorReport } from '../cli/doctor.js';
import type { AddResult, TunnelView } from '../daemon/tunnels.js';

const OPTS = 'mounttargetip=127.0.0.14,region=us-east-1';
const DEFAULTS = 'nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport';

describe('efsctl attach and detach', function () {
  let daemon: Daemon;
  before(async () => {
    daemon = await new Daemon(daemonConfig(20700)).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  const tunnels = async (): Promise<TunnelView[]> => (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels;
  /** What a failed request must leave unchanged: which tunnels, on which ports, with which mounts. */
  const shape = async (): Promise<Array<[string, number, string[]]>> => (await tunnels()).map((t) => [t.fs_id, t.port, t.mounts]);

  // Each test makes the tunnels and mounts it reads (a file system of its own where it counts them), so
  // that any one of them passes run alone (TEST_GREP) as well as after the others.
  const tunnel = async (fsId: string): Promise<TunnelView | undefined> => (await tunnels()).find((t) => t.fs_id === fsId);

  it('runs mount.nfs4 with efs-utils\' default options and the tunnel port, and records the mount', async () => {
    const dir = daemon.mountPoint('default');
    const before = daemon.mount.calls().length;
    const r = await daemon.efsctl('attach', 'fs-0abcde00', dir, '-o', OPTS);
    expect(r.code, r.stderr).to.equal(0);
    const port = (await tunnel('fs-0abcde00'))!.port;
    expect(r.stdout).to.equal(`fs-0abcde00:/ mounted at ${dir} through 127.0.0.1:${port} (TLS to 127.0.0.14:2049)\n`);
    const calls = daemon.mount.calls().slice(before);
    expect(calls).to.have.length(1);
    expect(calls[0]!.argv).to.deep.equal([daemon.mount.mountCommand, '127.0.0.1:/', dir, '-o', `${DEFAULTS},port=${port}`]);
    expect(calls[0]!.env.PATH).to.be.a('string');
    expect(daemon.record('fs-0abcde00').mounts).to.deep.equal([dir]);
    expect((await tunnel('fs-0abcde00'))!.mounts).to.deep.equal([dir]);
  });

  it('says a directory is already mounted from that file system, exits 0, and mounts nothing again', async () => {
    const dir = daemon.mountPoint('again');
    expect((await daemon.efsctl('attach', FS_ID, dir, '-o', OPTS)).code).to.equal(0);
    const calls = daemon.mount.calls().length;
    const r = await daemon.efsctl('attach', FS_ID, dir, '-o', OPTS);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.match(new RegExp(`^${dir} is already mounted from ${FS_ID} through 127\\.0\\.0\\.1:\\d+\\n$`));
    expect(daemon.mount.calls()).to.have.length(calls);
  });

  it('lets a user option replace its default in place, and appends other NFS options', async () => {
    const dir = daemon.mountPoint('override');
    // stunnel (efs-utils 2's choice of tunnel) is efs-utils' own option: it never reaches mount.nfs4.
    const r = await daemon.efsctlJson<AttachResult>('attach', FS_ID, dir, '-o', `${OPTS},rsize=65536,soft,vers=4.0,noac,stunnel,timeo=100`);
    expect(r.command).to.deep.equal([
      daemon.mount.mountCommand, '127.0.0.1:/', dir, '-o',
      `vers=4.0,rsize=65536,wsize=1048576,soft,timeo=100,retrans=2,noresvport,port=${r.tunnel!.port},noac`,
    ]);
    expect(daemon.mount.calls().at(-1)!.argv).to.deep.equal(r.command);
  });

  it('mounts a sub-path as 127.0.0.1:/path, through the same tunnel', async () => {
    const root = await daemon.efsctlJson<AttachResult>('attach', 'fs-0abcde01', daemon.mountPoint('sub-root'), '-o', OPTS);
    const dir = daemon.mountPoint('sub');
    const r = await daemon.efsctlJson<AttachResult>('attach', 'fs-0abcde01:/data/projects', dir, '-o', OPTS);
    expect(r.command[1]).to.equal('127.0.0.1:/data/projects');
    expect(r.tunnel!.port).to.equal(root.tunnel!.port);
    expect(r.tunnel!.mounts).to.deep.equal([daemon.mountPoint('sub-root'), dir]);
    expect((await tunnels()).filter((t) => t.fs_id === 'fs-0abcde01')).to.have.length(1);
  });

  it('accepts the file system DNS name as the spec and takes the region from it', async () => {
    const dir = daemon.mountPoint('dns');
    const r = await daemon.efsctlJson<AttachResult>('attach', `fs-0dd0dd00.efs.eu-west-1.amazonaws.com:/`, dir);
    expect(r.tunnel!.target.dns_name).to.equal('fs-0dd0dd00.efs.eu-west-1.amazonaws.com');
  });

  it('refuses a DNS name as the spec that is not the name its tunnel would dial (a region= of another region, another DNS suffix), as efs-utils does, and mounts nothing', async () => {
    const calls = daemon.mount.calls().length;
    const region = await daemon.efsctl('attach', 'fs-0dd0dd03.efs.eu-west-1.amazonaws.com:/', daemon.mountPoint('dns-other-region'), '-o', 'region=us-east-1');
    expect(region.code).to.equal(1);
    expect(region.stderr).to.contain('The DNS name "fs-0dd0dd03.efs.eu-west-1.amazonaws.com" is not the file system\'s DNS name for these mount options and efs-relay\'s config, fs-0dd0dd03.efs.us-east-1.amazonaws.com: their region=, efs.dns_name_suffix or efs.dns_name_format disagree with the name [BAD_OPTION]');
    const suffix = await daemon.efsctl('attach', 'fs-0dd0dd03.efs.eu-west-1.example.com:/', daemon.mountPoint('dns-other-suffix'));
    expect(suffix.stderr).to.contain('The DNS name "fs-0dd0dd03.efs.eu-west-1.example.com" is not the file system\'s DNS name for these mount options and efs-relay\'s config, fs-0dd0dd03.efs.eu-west-1.amazonaws.com');
    expect(daemon.mount.calls()).to.have.length(calls);
    expect(await tunnel('fs-0dd0dd03')).to.equal(undefined);
  });

  it('takes the availability zone from a zone\'s DNS name as the spec, as efs-utils does, and still expects the file system\'s name in the certificate', async () => {
    const dir = daemon.mountPoint('dns-az');
    const r = await daemon.efsctlJson<AttachResult>('attach', 'eu-west-1b.fs-0dd0dd01.efs.eu-west-1.amazonaws.com:/', dir);
    expect(r.tunnel!.target).to.deep.include({ dns_name: 'eu-west-1b.fs-0dd0dd01.efs.eu-west-1.amazonaws.com', cert_name: 'fs-0dd0dd01.efs.eu-west-1.amazonaws.com' });
    expect(r.tunnel!.options).to.deep.include({ region: 'eu-west-1', az: 'eu-west-1b' });
    const calls = daemon.mount.calls().length;
    const other = await daemon.efsctl('attach', 'eu-west-1b.fs-0dd0dd02.efs.eu-west-1.amazonaws.com:/', daemon.mountPoint('dns-az-other'), '-o', 'az=eu-west-1c');
    expect(other.code).to.equal(1);
    expect(daemon.mount.calls().length, 'nothing mounted').to.equal(calls);
    expect(other.stderr).to.contain('The DNS name "eu-west-1b.fs-0dd0dd02.efs.eu-west-1.amazonaws.com" does not match the az provided in the mount options, expected = eu-west-1c, given = eu-west-1b [BAD_OPTION]');
  });

  it('fails when DIR does not exist or is not a directory, and makes no tunnel', async () => {
    const before = await shape();
    const missing = await daemon.efsctl('attach', 'fs-0abcdef0', join(daemon.dir, 'nope'), '-o', 'region=us-east-1');
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.contain(`Mount point ${join(daemon.dir, 'nope')} does not exist [BAD_MOUNT_POINT]`);
    const file = join(daemon.dir, 'a-file');
    writeFileSync(file, '');
    const notDir = await daemon.efsctl('attach', 'fs-0abcdef0', file, '-o', 'region=us-east-1');
    expect(notDir.code).to.equal(1);
    expect(notDir.stderr).to.contain(`Mount point ${file} is not a directory [BAD_MOUNT_POINT]`);
    expect(await shape()).to.deep.equal(before);
  });

  it('reports a failed mount command with its exit code and stderr, and removes the tunnel it made', async () => {
    const before = await shape();
    daemon.mount.behave('mount', { fail: 1, code: 32, message: 'mount.nfs4: access denied by server while mounting 127.0.0.1:/' });
    const calls = daemon.mount.calls().length;
    const r = await daemon.efsctl('attach', 'fs-0abcdef1', daemon.mountPoint('denied'), '-o', 'region=us-east-1');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('exited with 32 after 1 attempt: mount.nfs4: access denied by server while mounting 127.0.0.1:/ [MOUNT_FAILED]');
    expect(daemon.mount.calls().length - calls, 'not retried').to.equal(1);
    expect(await shape()).to.deep.equal(before);
  });

  it('leaves an existing tunnel exactly as it was when the mount fails', async () => {
    expect((await daemon.efsctl('attach', FS_ID, daemon.mountPoint('existing'), '-o', OPTS)).code).to.equal(0);
    const before = (await tunnel(FS_ID))!;
    daemon.mount.behave('mount', { fail: 1, code: 32, message: 'mount.nfs4: No such file or directory' });
    const r = await daemon.efsctl('attach', `${FS_ID}:/missing`, daemon.mountPoint('missing-path'), '-o', OPTS);
    expect(r.code).to.equal(1);
    const after = (await tunnel(FS_ID))!;
    expect(after.port).to.equal(before.port);
    expect(after.mounts).to.deep.equal(before.mounts);
  });

  it('retries a mount that failed with "reset by peer", up to 3 attempts, and then succeeds', async () => {
    daemon.mount.behave('mount', { fail: 2, code: 32, message: 'mount.nfs4: Connection reset by peer' });
    const calls = daemon.mount.calls().length;
    const r = await daemon.efsctlJson<AttachResult>('attach', 'fs-0abcdef2', daemon.mountPoint('retry'), '-o', 'region=us-east-1');
    expect(r.attempts).to.equal(3);
    expect(daemon.mount.calls().length - calls).to.equal(3);
    // Each retry is in the journal, with why and when the next attempt comes.
    const retries = daemon.logs.split('\n').filter((l) => l.includes(' mount.retrying fs=fs-0abcdef2 '));
    expect(retries).to.have.length(2);
    for (const [i, line] of retries.entries()) {
      expect(line).to.match(new RegExp(`^\\S+ info mount\\.retrying fs=fs-0abcdef2 code=- msg="\\S+ exited with 32 after ${i + 1} attempts?: ` +
        `mount\\.nfs4: Connection reset by peer; attempt ${i + 2} of 3 in \\d+\\.\\d s" dir=\\S+/retry$`));
    }
  });

  it('gives up after 3 attempts of a mount that keeps timing out', async () => {
    daemon.mount.behave('mount', { fail: 3, code: 32, message: 'mount.nfs4: Connection timed out' });
    const r = await daemon.efsctl('attach', 'fs-0abcdef3', daemon.mountPoint('timeout'), '-o', 'region=us-east-1');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('exited with 32 after 3 attempts: mount.nfs4: Connection timed out [MOUNT_FAILED]');
  });

  it('stops a mount at once, without a second attempt, when the tunnel meets a failure no retry mends: a certificate for another host', async () => {
    // A mount target whose certificate (from the trusted CA) names FS_NAME, not the file system mounted.
    const wrong = await new MountTargetStandIn({ host: '127.0.0.51', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    daemon.mount.behave('mount', { reach: true }); // mount.nfs4 reconnects into the failure for 10 s, as the kernel would
    try {
      const fsId = 'fs-0abcde51';
      const dir = daemon.mountPoint('wrong-cert');
      const calls = daemon.mount.calls().length;
      const r = await daemon.efsctl('attach', fsId, dir, '-o', 'mounttargetip=127.0.0.51,region=us-east-1');
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain(`was stopped during attempt 1, and not tried again: the tunnel's connection to the mount target failed in a way no retry mends (TLS_HOSTNAME_MISMATCH): TLS connection to 127.0.0.51:2049 (${fsId}.efs.us-east-1.amazonaws.com) refused`);
      expect(r.stderr).to.contain('[MOUNT_FAILED]').and.contain(ERRORS.TLS_HOSTNAME_MISMATCH.hint);
      expect(daemon.mount.calls().length - calls, 'one attempt').to.equal(1);
      expect(daemon.mount.mounts().filter((l) => l.split(' ')[1] === dir)).to.deep.equal([]);
      expect(await tunnel(fsId), 'the tunnel the attach made is gone').to.equal(undefined);
      const failed = await waitFor('mount.failed in the log', () => daemon.logs.split('\n').find((l) => l.includes(' mount.failed ') && l.includes(`fs=${fsId}`)));
      expect(failed).to.include('code=MOUNT_FAILED').and.include('(TLS_HOSTNAME_MISMATCH)');
      expect(wrong.received, 'no NFS byte reached the wrong server').to.deep.equal([]);
    } finally {
      daemon.mount.behave('mount', {});
      await wrong.stop();
    }
  });

  it('stops each of a dozen mounts of one file system under way together at the same refusal, with no warning about event listeners in the log', async () => {
    const wrong = await new MountTargetStandIn({ host: '127.0.0.51', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    daemon.mount.behave('mount', { reach: true });
    try {
      const fsId = 'fs-0abcde53';
      const calls = daemon.mount.calls().length;
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) =>
        daemon.efsctl('attach', `${fsId}:/d${i}`, daemon.mountPoint(`many-${i}`), '-o', 'mounttargetip=127.0.0.51,region=us-east-1')));
      for (const r of results) {
        expect(r.code).to.equal(1);
        expect(r.stderr).to.contain('was stopped during attempt 1, and not tried again').and.contain('(TLS_HOSTNAME_MISMATCH)');
      }
      // A mount.nfs4 stopped in its first milliseconds (another mount's connection met the refusal first) may not
      // have written its call down yet; none was run a second time.
      expect(daemon.mount.calls().length - calls, 'no second attempt').to.be.within(1, 12);
      expect(daemon.logs).to.not.contain('MaxListenersExceededWarning');
    } finally {
      daemon.mount.behave('mount', {});
      await wrong.stop();
    }
  });

  it('keeps efs-utils\' 3 attempts when the tunnel\'s failure may pass: nothing listens at the mount target yet', async () => {
    daemon.mount.behave('mount', { reach: true, giveUpMs: 1_000 }); // long enough for a refusal to reach it on a busy machine
    try {
      const fsId = 'fs-0abcde52';
      const calls = daemon.mount.calls().length;
      const r = await daemon.efsctl('attach', fsId, daemon.mountPoint('refused'), '-o', 'mounttargetip=127.0.0.52,region=us-east-1');
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain('after 3 attempts: mount.nfs4: Connection reset by peer. The tunnel could not connect to the mount target (CONNECT_REFUSED)');
      expect(daemon.mount.calls().length - calls).to.equal(3);
    } finally {
      daemon.mount.behave('mount', {});
    }
  });

  const refusals: Array<[string, string, string]> = [
    ['notls (policy.require_tls)', 'notls', 'The "notls" option is refused: policy.require_tls is on, so EFS is mounted only through a TLS tunnel [TLS_REQUIRED]'],
    ['port=', 'port=2049', 'The "port" and "tls" options are mutually exclusive [BAD_OPTION]'],
    ['capath', 'capath=/etc/ssl/certs', 'Unsupported mount options detected: "capath" [BAD_OPTION]'],
    ['a malformed access point', 'accesspoint=fsap-12', 'Access Point ID fsap-12 is malformed [BAD_OPTION]'],
    ['awsprofile without iam', 'awsprofile=dev', 'The "iam" option is required when mounting with named profile option, "awsprofile" [BAD_OPTION]'],
    ['crossaccount when instance metadata is off, instead of handing it to mount.nfs4', 'crossaccount',
      'Cannot retrieve AZ-ID from metadata service. This is required for the crossaccount mount option: instance metadata is not asked (efs.metadata_url is "") [NO_AZ_ID]'],
    ['crossaccount with mounttargetip', 'crossaccount,mounttargetip=127.0.0.2', 'mounttargetip option is incompatible with crossaccount option. [BAD_OPTION]'],
    ['a web identity without iam, instead of handing it to mount.nfs4', 'rolearn=arn:aws:iam::123456789012:role/efs,jwtpath=/var/run/token',
      'The "iam" option is required when mounting with a web identity, "rolearn" and "jwtpath" [BAD_OPTION]'],
    ['jwtpath without rolearn', 'iam,jwtpath=/var/run/token', 'The "rolearn" and "jwtpath" options name a web identity together: give both [BAD_OPTION]'],
    ['ocsp with noocsp', 'ocsp,noocsp', 'The "ocsp" and "noocsp" options are mutually exclusive [BAD_OPTION]'],
    ['a non-integer tlsport', 'tlsport=x', 'tlsport option [x] is not an integer [BAD_OPTION]'],
  ];
  for (const [what, opts, message] of refusals) {
    it(`refuses ${what} with exit 1 and mounts nothing`, async () => {
      const calls = daemon.mount.calls().length;
      const r = await daemon.efsctl('attach', 'fs-0abcdef4', daemon.mountPoint('refused'), '-o', `region=us-east-1,${opts}`);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain(message);
      expect(daemon.mount.calls().length).to.equal(calls);
    });
  }

  it('stop refuses a mounted tunnel without --force, with TUNNEL_MOUNTED', async () => {
    const dir = daemon.mountPoint('stop-refused');
    expect((await daemon.efsctl('attach', 'fs-0abcde02', dir, '-o', 'region=us-east-1')).code).to.equal(0);
    const r = await daemon.efsctl('stop', 'fs-0abcde02');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`fs-0abcde02 is mounted at ${dir}; refusing to stop its tunnel [TUNNEL_MOUNTED]`);
    expect(await tunnel('fs-0abcde02')).to.not.equal(undefined);
  });

  it('stop --force stops a mounted tunnel', async () => {
    expect((await daemon.efsctl('attach', 'fs-0abcde03', daemon.mountPoint('stop-forced'), '-o', 'region=us-east-1')).code).to.equal(0);
    const r = await daemon.efsctl('stop', 'fs-0abcde03', '--force');
    expect(r.code).to.equal(0);
    expect(await tunnel('fs-0abcde03')).to.equal(undefined);
  });

  it('detach unmounts DIR, forgets it, and keeps the tunnel while another mount uses it', async () => {
    // Two mounts of its own, so that the test does not lean on those the tests before it made.
    const dir = daemon.mountPoint('detach-one');
    for (const d of [dir, daemon.mountPoint('detach-other')]) expect((await daemon.efsctl('attach', FS_ID, d, '-o', OPTS)).code).to.equal(0);
    const r = await daemon.efsctl('detach', dir);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(`${dir} unmounted; the tunnel for ${FS_ID} keeps running (still in use)\n`);
    expect(daemon.mount.calls('umount').at(-1)!.argv).to.deep.equal([daemon.mount.umountCommand, dir]);
    expect(daemon.record(FS_ID).mounts).to.not.include(dir);
  });

  it('detach of the last mount stops the tunnel and frees its port', async () => {
    const [first, last] = [daemon.mountPoint('last-one'), daemon.mountPoint('last-two')];
    for (const d of [first, last]) expect((await daemon.efsctl('attach', 'fs-0abcde04', d, '-o', OPTS)).code).to.equal(0);
    const t = (await tunnel('fs-0abcde04'))!;
    expect((await daemon.efsctl('detach', first)).code).to.equal(0);
    const r = await daemon.efsctl('detach', last);
    expect(r.stdout).to.equal(`${last} unmounted; the tunnel for fs-0abcde04 stopped (nothing else uses it)\n`);
    expect(await tunnel('fs-0abcde04')).to.equal(undefined);
    await expectPortFree(t.port);
  });

  it('detach of a directory that is not mounted through a tunnel exits 1 with NOT_MOUNTED', async () => {
    const r = await daemon.efsctl('detach', daemon.mountPoint('never'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`${join(daemon.dir, 'mnt', 'never')} is not mounted through an efs-relay tunnel [NOT_MOUNTED]`);
  });

  it('reports a failed umount with its exit code and stderr, and changes nothing', async () => {
    const dir = daemon.mountPoint('busy');
    await daemon.efsctlJson<AttachResult>('attach', 'fs-0abcdef5', dir, '-o', 'region=us-east-1');
    daemon.mount.behave('umount', { fail: 1, code: 32, message: `umount: ${dir}: target is busy.` });
    const r = await daemon.efsctl('detach', dir);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`exited with 32: umount: ${dir}: target is busy. [UMOUNT_FAILED]`);
    expect(daemon.record('fs-0abcdef5').mounts).to.deep.equal([dir]);
  });
});

describe('attach end to end', function () {
  let stack: NfsStack;
  before(async function () {
    requireNfs(this);
    stack = await startNfsStack('127.0.0.15', 20750);
  });
  after(async () => {
    await stack?.stop();
  });

  it('records a mount line whose port carries NFS through verified TLS: nfs-cp through it, checksums match', async () => {
    const { daemon, ganesha, target } = stack;
    const dir = join(daemon.dir, 'mnt');
    mkdirSync(dir);
    const r = await daemon.efsctl('attach', FS_ID, dir, '-o', 'mounttargetip=127.0.0.15,region=us-east-1');
    expect(r.code, r.stderr).to.equal(0);
    const argv = daemon.mount.calls()[0]!.argv;
    const port = Number(/(?:^|,)port=(\d+)/.exec(argv[4]!)![1]);
    const src = join(daemon.dir, 'payload.bin');
    writeFileSync(src, Buffer.alloc(5 << 20, 'attach-end-to-end'));
    await nfsCp(src, ganesha.v3Url('attach.bin', port));
    expect((await nfsCatSha256(ganesha.v4Url('attach.bin', port))).sha256).to.equal(await sha256File(src));
    expect(target.sessions[0]).to.include({ protocol: 'TLSv1.2', servername: FS_NAME });
  });
});

describe('ports named by mounts of stopped tunnels', function () {
  let daemon: Daemon;
  beforeEach(async () => {
    // Two ports: one for the mount left behind, one for everything else. A daemon of its own per test.
    daemon = await new Daemon(daemonConfig(20790, { port_range: { first: 20790, last: 20791 }, metrics: { listen: '127.0.0.1:19811' } })).start();
  });
  afterEach(async () => {
    await daemon?.stop();
  });

  const scrape = async (): Promise<string> => (await fetch('http://127.0.0.1:19811/metrics')).text();
  /** Where the daemon keeps whose port a left-behind mount names. */
  const leftFile = (port: number): string => join(daemon.stateDir, 'left-mounted', `${port}.json`);
  const portOf = async (fsId: string): Promise<number | undefined> =>
    (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === fsId)?.port;

  /** Attach `fsId` at a directory of its own, then stop its tunnel with --force: the mount stays. Returns the directory and port. */
  async function leaveMounted(fsId: string): Promise<{ dir: string; port: number }> {
    const dir = join(daemon.dir, 'mnt', fsId);
    mkdirSync(dir, { recursive: true });
    expect((await daemon.efsctl('attach', fsId, dir, '-o', OPTS)).code).to.equal(0);
    const port = (await portOf(fsId))!;
    const stop = await daemon.efsctl('stop', fsId, '--force');
    expect(stop.code).to.equal(0);
    expect(stop.stdout).to.equal(`${fsId}: tunnel on port ${port} stopped\n` +
      `${dir} still mounted through port ${port}: their I/O waits until \`efsctl add ${fsId}\` gives the port back, or unmount them\n`);
    expect(daemon.mount.mounts().join('\n')).to.contain(`port=${port}`); // the mount is still there
    await sleep(500); // five reads of the /proc/mounts stand-in (0.1 s apart in tests)
    return { dir, port };
  }

  it('never gives another file system\'s tunnel the port that a mount of a force-stopped tunnel still names, and says so when no other is left', async () => {
    const { dir, port: orphanPort } = await leaveMounted('fs-0abcde10');
    const otherPort = orphanPort === 20790 ? 20791 : 20790;
    // Picked from a random start each time: without the rule, each add would land on the orphan's port half the time.
    for (let i = 0; i < 8; i++) {
      const add = await daemon.efsctlJson<AddResult>('add', 'fs-0abcde11', '-o', OPTS);
      expect(add.tunnel.port, `add ${i + 1}`).to.equal(otherPort);
      expect((await daemon.efsctl('stop', 'fs-0abcde11')).code).to.equal(0);
    }
    expect((await daemon.efsctl('add', 'fs-0abcde11', '-o', OPTS)).code).to.equal(0);
    const full = await daemon.efsctl('add', 'fs-0abcde12', '-o', OPTS);
    expect(full.code).to.equal(1);
    expect(full.stderr).to.contain('Every port in 20790-20791 is in use (1 by mounts whose tunnel was stopped; unmount them to free their ports) [PORTS_EXHAUSTED]');
    // Once the mount is gone, its port is free again.
    daemon.mount.removeMount(dir);
    await waitFor('the add once the watcher has read the mount list without the mount', async () =>
      (await daemon.efsctl('add', 'fs-0abcde12', '-o', OPTS)).code === 0 || null);
    expect(await portOf('fs-0abcde12')).to.equal(orphanPort);
  });

  it('gives a file system\'s new tunnel the port its own force-stopped mount still names, and the mount rejoins its record', async () => {
    const { dir, port } = await leaveMounted('fs-0abcde13');
    const add = await daemon.efsctlJson<AddResult>('add', 'fs-0abcde13', '-o', OPTS);
    expect(add.tunnel.port).to.equal(port);
    // The watcher finds the mount through the tunnel's port and records it again, so stop refuses once more.
    await waitFor('the left-behind mount in the record again', async () =>
      (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === 'fs-0abcde13')?.mounts.includes(dir) || null);
    expect((await daemon.efsctl('stop', 'fs-0abcde13')).stderr).to.contain('[TUNNEL_MOUNTED]');
  });

  it('gives a file system\'s new tunnel every port its force-stopped mounts still name: the first as its own, the others as extra ports', async () => {
    // A tunnel with an extra port (a second efs-utils mount taken over), each port named by a mount.
    const fsId = 'fs-0abcde19';
    const [a, b] = [join(daemon.dir, 'mnt', 'a'), join(daemon.dir, 'mnt', 'b')];
    daemon.mount.addMountLine(`127.0.0.1:/ ${a} nfs4 rw,vers=4.1,port=20790,addr=127.0.0.1 0 0`);
    daemon.mount.addMountLine(`127.0.0.1:/ ${b} nfs4 rw,vers=4.1,port=20791,addr=127.0.0.1 0 0`);
    writeFileSync(join(daemon.stateDir, `${fsId}.json`), JSON.stringify({
      version: 1, fs_id: fsId, port: 20790, extra_ports: [20791],
      target: { dns_name: `${fsId}.efs.us-east-1.amazonaws.com`, address: '127.0.0.14', port: 2049, region: 'us-east-1' },
      options: { mounttargetip: '127.0.0.14', region: 'us-east-1' }, created: new Date().toISOString(), source: 'manual', mounts: [a, b],
    }));
    await waitFor('the record adopted', async () => (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === fsId)?.extra_ports.length === 1 || null);
    const stop = await daemon.efsctl('stop', fsId, '--force');
    expect(stop.stdout).to.equal(`${fsId}: tunnel on port 20790 stopped\n` +
      `${a}, ${b} still mounted through ports 20790, 20791: their I/O waits until \`efsctl add ${fsId}\` gives the ports back, or unmount them\n`);
    for (const port of [20790, 20791]) expect(JSON.parse(readFileSync(leftFile(port), 'utf8'))).to.deep.include({ port, fs_id: fsId, mounts: [a, b] });
    expect((await daemon.efsctl('add', 'fs-0abcde1a', '-o', OPTS)).stderr, 'both ports are the file system\'s').to.contain('[PORTS_EXHAUSTED]');

    const add = await daemon.efsctlJson<AddResult>('add', fsId, '-o', OPTS);
    expect([add.tunnel.port, add.tunnel.extra_ports]).to.deep.equal([20790, [20791]]);
    await expectPortTaken(20791);
    expect(existsSync(leftFile(20790)) || existsSync(leftFile(20791)), 'nothing left to remember').to.equal(false);
    await waitFor('both mounts in the record again', async () =>
      (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === fsId)?.mounts.length === 2 || null);
  });

  const listed = async (fsId: string): Promise<TunnelView | undefined> =>
    (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === fsId);

  it('leaves a force-stopped mount\'s port that another process holds to the user, and doctor names the add that gives it back as an extra port once free', async () => {
    const fsId = 'fs-0abcde1c';
    const { dir, port } = await leaveMounted(fsId);
    const other = port === 20790 ? 20791 : 20790;
    // Whatever holds the port may serve another file system's mount (efs-utils picks ports on its own): the
    // daemon does not wait to take the port the moment it is let go.
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', r));
    try {
      const add = await daemon.efsctlJson<AddResult>('add', fsId, '-o', OPTS);
      expect([add.tunnel.port, add.tunnel.extra_ports, add.tunnel.state]).to.deep.equal([other, [], 'listening']);
      expect(JSON.parse(readFileSync(leftFile(port), 'utf8')), 'still remembered as the file system\'s').to.deep.include({ port, fs_id: fsId });
    } finally {
      await new Promise((r) => squatter.close(r));
    }
    await sleep(5_500); // past the 5 s at which a waiting port would be tried again
    await expectPortFree(port);

    const report = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
    const mounts = report.checks.find((c) => c.name === 'mounts')!;
    expect(mounts.status).to.equal('fail');
    expect(mounts.message).to.equal(`${dir} (port ${port}, ${fsId}): mounted through a local port, but no tunnel listens there; NFS I/O there waits`);
    const fix = `efsctl add ${fsId} -o mounttargetip=127.0.0.14,region=us-east-1,tlsport=${port}`;
    expect(mounts.fix).to.equal(`\`${fix}\` gives ${dir} its port back, as an extra port of the tunnel on port ${other}; or unmount.`);

    const r = await daemon.efsctl(...fix.split(' ').slice(1));
    expect(r.stdout).to.contain(`${fsId}: also on port ${port}, for the mounts that name it\n`);
    await expectPortTaken(port);
    expect(existsSync(leftFile(port)), 'the tunnel\'s record holds the port now').to.equal(false);
    expect(daemon.record(fsId).extra_ports).to.deep.equal([port]);
    await waitFor('the mount in the record again', async () => (await listed(fsId))?.mounts.includes(dir) || null);
  });

  it('lets `efsctl add FS -o tlsport=PORT` give a running tunnel the port that a mount names and nothing serves, as an extra port', async () => {
    const fsId = 'fs-0abcde1d';
    const port = (await daemon.efsctlJson<AddResult>('add', fsId, '-o', OPTS)).tunnel.port;
    const other = port === 20790 ? 20791 : 20790;
    const move = await daemon.efsctl('add', fsId, '-o', `${OPTS},tlsport=${other}`);
    expect(move.stderr, 'no mount names the port: that asks to move the tunnel').to.contain(`${fsId} already has a tunnel on port ${port}; stop it first to move it to ${other} [PORT_TAKEN]`);

    // A mount of the file system through a port whose stunnel died, with nothing on record to say whose it was.
    const dir = join(daemon.dir, 'mnt', 'orphan');
    daemon.mount.addMountLine(`127.0.0.1:/ ${dir} nfs4 rw,vers=4.1,port=${other},addr=127.0.0.1 0 0`);
    const r = await waitFor('the add once the watcher has seen the mount', async () => {
      const a = await daemon.efsctl('add', fsId, '-o', `${OPTS},tlsport=${other}`);
      return a.code === 0 ? a : null;
    });
    expect(r.stdout).to.equal(`${fsId}: tunnel already running on 127.0.0.1:${port} → 127.0.0.14:2049 (TLS; its certificate must name ${fsId}.efs.us-east-1.amazonaws.com)\n` +
      `${fsId}: also on port ${other}, for the mounts that name it\n`);
    await expectPortTaken(other);
    expect(daemon.record(fsId).extra_ports).to.deep.equal([other]);
    await waitFor('the mount in the record', async () => (await listed(fsId))?.mounts.includes(dir) || null);
    expect((await daemon.efsctl('add', fsId, '-o', `${OPTS},tlsport=${other}`)).stdout, 'asked again: nothing changes').to.equal(r.stdout);
  });

  it('still knows after a daemon restart which file system a force-stopped mount\'s port belongs to: that one gets it back, no other', async () => {
    const { dir, port } = await leaveMounted('fs-0abcde14');
    expect(JSON.parse(readFileSync(leftFile(port), 'utf8'))).to.deep.include({ port, fs_id: 'fs-0abcde14', mounts: [dir] });
    await daemon.stop();
    await daemon.start();
    const otherPort = port === 20790 ? 20791 : 20790;
    for (let i = 0; i < 4; i++) {
      const add = await daemon.efsctlJson<AddResult>('add', 'fs-0abcde15', '-o', OPTS);
      expect(add.tunnel.port, `add ${i + 1}`).to.equal(otherPort);
      expect((await daemon.efsctl('stop', 'fs-0abcde15')).code).to.equal(0);
    }
    const add = await daemon.efsctlJson<AddResult>('add', 'fs-0abcde14', '-o', OPTS);
    expect(add.tunnel.port).to.equal(port);
    await waitFor('the left-behind mount in the record again', async () =>
      (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === 'fs-0abcde14')?.mounts.includes(dir) || null);
    // The port is the tunnel's again, so there is nothing left to remember.
    expect(existsSync(leftFile(port))).to.equal(false);
  });

  it('keeps whose port it was when the record of a mounted tunnel is removed by hand, and gives it back to that file system', async () => {
    const dir = join(daemon.dir, 'mnt', 'by-hand');
    mkdirSync(dir, { recursive: true });
    expect((await daemon.efsctl('attach', 'fs-0abcde17', dir, '-o', OPTS)).code).to.equal(0);
    const port = (await portOf('fs-0abcde17'))!;
    rmSync(join(daemon.stateDir, 'fs-0abcde17.json'));
    await waitFor('the tunnel stopped', async () => (await portOf('fs-0abcde17')) === undefined || null);
    expect(JSON.parse(readFileSync(leftFile(port), 'utf8'))).to.deep.include({ port, fs_id: 'fs-0abcde17', mounts: [dir] });
    expect((await daemon.efsctlJson<AddResult>('add', 'fs-0abcde18', '-o', OPTS)).tunnel.port).to.not.equal(port);
    expect((await daemon.efsctlJson<AddResult>('add', 'fs-0abcde17', '-o', OPTS)).tunnel.port).to.equal(port);
  });

  it('reports a port that a force-stopped mount names as held by mounts, not free, until the mount is gone', async () => {
    const { dir, port } = await leaveMounted('fs-0abcde16');
    const held = await scrape();
    expect(held).to.match(/^efs_relay_ports_in_use 0$/m).and.match(/^efs_relay_ports_held_by_mounts 1$/m).and.match(/^efs_relay_ports_free 1$/m);
    daemon.mount.removeMount(dir);
    await waitFor('both ports free once the watcher has read the mount list without the mount', async () =>
      /^efs_relay_ports_free 2$/m.test(await scrape()) || null);
    expect(await scrape()).to.match(/^efs_relay_ports_held_by_mounts 0$/m);
    expect(existsSync(leftFile(port))).to.equal(false);
  });
});

// efs-utils' optimize_readahead: Linux 5.4 and later read ahead 128 KiB on NFS, which slows sequential reads.
describe('the readahead of a mount', function () {
  const needs = (): string | null => (kernelNeedsReadahead() ? null : `this kernel (${release()}) is older than 5.4, whose NFS readahead is already 15 × rsize`);
  const attachIn = async (daemon: Daemon, fsId: string, name: string, options = 'region=us-east-1'): Promise<string> => {
    const dir = join(daemon.dir, 'mnt', name);
    mkdirSync(dir, { recursive: true });
    const r = await daemon.efsctl('attach', fsId, dir, '-o', options);
    expect(r.code, r.stderr).to.equal(0);
    return dir;
  };

  let daemon: Daemon;
  before(async function () {
    skipIf(this, needs());
    daemon = await new Daemon(daemonConfig(26200)).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  it('is set to 15 × rsize after each mount (15360 KiB for 1 MiB, or the rsize= given), as efs-utils sets it, and logged', async () => {
    const dir = await attachIn(daemon, 'fs-0ead0001', 'default');
    expect(readFileSync(daemon.readaheadFile, 'utf8')).to.equal('15360\n');
    expect(daemon.logs).to.contain(`info mount.readahead fs=fs-0ead0001 code=- msg="read_ahead_kb set to 15360 (15 × rsize), as efs-utils does on Linux 5.4 and later" dir=${dir} file=${daemon.readaheadFile}`);
    await attachIn(daemon, 'fs-0ead0002', 'small', 'region=us-east-1,rsize=65536');
    expect(readFileSync(daemon.readaheadFile, 'utf8')).to.equal('960\n');
  });

  it('mounts all the same and says why, when the mount\'s backing device is not in bdi_dir', async () => {
    const bdiFile = daemon.readaheadFile;
    rmSync(bdiFile);
    try {
      const dir = await attachIn(daemon, 'fs-0ead0003', 'no-device');
      expect(daemon.logs).to.contain(`warn mount.readahead_failed fs=fs-0ead0003 code=- msg="could not set read_ahead_kb to 15360: ENOENT: no such file or directory, open '${bdiFile}'; the mount works, but its sequential reads may be slower (Linux 5.4 and later read ahead 128 KiB on NFS)" dir=${dir}`);
      expect(existsSync(bdiFile), 'no file is made where the kernel lists no device').to.equal(false);
    } finally {
      writeFileSync(bdiFile, '128\n');
    }
  });

  it('leaves it alone with mount.optimize_readahead: false', async () => {
    writeFileSync(daemon.readaheadFile, '128\n');
    writeFileSync(daemon.configFile, readFileSync(daemon.configFile, 'utf8').replace('mount:\n', 'mount:\n  optimize_readahead: false\n'));
    expect((await daemon.efsctl('reload')).code).to.equal(0);
    await attachIn(daemon, 'fs-0ead0004', 'off');
    expect(readFileSync(daemon.readaheadFile, 'utf8')).to.equal('128\n');
    expect(daemon.logs).to.not.contain('mount.readahead fs=fs-0ead0004');
  });
});
