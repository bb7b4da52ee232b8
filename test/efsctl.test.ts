// efsctl as a user runs it: verbs, human and --json output, exit codes, and
// bad input that is refused with efs-utils' messages and changes nothing.
import { expect } from 'chai';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { BIN, Daemon, escapeRegExp, ROOT, run, sleep, tempDir, waitFor } from './helpers/daemon.js';
import { expectPortFree } from './helpers/client.js';
import { FS_ID, FS_NAME, daemonConfig, testCerts } from './helpers/fixtures.js';
import type { AddResult, TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import { ERRORS, type ErrorCode } from '../daemon/errors.js';
import { tunnelDetail } from '../cli/format.js';

const FIRST = 20600;
const OPTS = 'mounttargetip=127.0.0.13,region=us-east-1';

/** What a request that asks a running tunnel for another port, target or CA bundle is told to do. */
const RUNNING_TUNNEL_HINT = 'A running tunnel keeps its port, target and CA bundle: leave those options out to use it as it is (`efsctl status FS_ID` shows them), or unmount the file system, `efsctl stop FS_ID`, and add it again.';

describe('efsctl', function () {
  let daemon: Daemon;
  // Two tunnels that the tests read: fs-0000aaaa on a known port (FIRST + 7), and FS_ID. Any test that
  // needs more makes its own, so that each test passes run alone (TEST_GREP) as well as after the others.
  before(async () => {
    daemon = await new Daemon(daemonConfig(FIRST)).start();
    await daemon.efsctlJson<AddResult>('add', 'fs-0000aaaa', '-o', `tls,tlsport=${FIRST + 7},region=us-east-1`);
    await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', OPTS);
  });
  after(async () => {
    await daemon?.stop();
  });

  const records = (): string[] => readdirSync(daemon.stateDir).filter((f) => f.endsWith('.json')).sort();

  /** The first port of the range that no tunnel holds. */
  const freePort = async (): Promise<number> => {
    const used = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.map((t) => t.port);
    return Array.from({ length: 50 }, (_, i) => FIRST + i).find((p) => !used.includes(p))!;
  };

  it('add with tlsport=N uses exactly that port', async () => {
    const port = await freePort();
    const r = await daemon.efsctlJson<AddResult>('add', 'fs-0000abcd', '-o', `tls,tlsport=${port},region=us-east-1`);
    expect(r.tunnel.port).to.equal(port);
    expect((await daemon.efsctlJson<TunnelDetail>('status', 'fs-0000abcd')).port).to.equal(port);
  });

  it('add starts a tunnel and prints its local port and verified target', async () => {
    const r = await daemon.efsctl('add', 'fs-0000cafe', '-o', OPTS);
    expect(r.code).to.equal(0);
    const name = 'fs-0000cafe.efs.us-east-1.amazonaws.com';
    expect(r.stdout).to.match(new RegExp(`^fs-0000cafe: tunnel started on 127\\.0\\.0\\.1:(\\d+) → 127\\.0\\.0\\.13:2049 \\(TLS; its certificate must name ${escapeRegExp(name)}\\)\\n$`));
  });

  it('add is idempotent: a second add returns the same port and says the tunnel already runs', async () => {
    const recordsBefore = records();
    const a = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', OPTS);
    const b = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', OPTS);
    expect(a.created).to.equal(false);
    expect(b.created).to.equal(false);
    expect(b.tunnel.port).to.equal(a.tunnel.port);
    expect((await daemon.efsctl('add', FS_ID, '-o', OPTS)).stdout).to.contain('tunnel already running');
    expect(records()).to.deep.equal(recordsBefore);
  });

  it('add refuses to hand out a running tunnel that verifies against another CA bundle than the one asked for', async () => {
    const other = join(tempDir('ca'), 'other-ca.pem');
    writeFileSync(other, readFileSync(testCerts().ca.certFile));
    const r = await daemon.efsctl('add', FS_ID, '-o', `${OPTS},cafile=${other}`);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`efsctl: ${FS_ID} already has a tunnel that verifies against ${testCerts().ca.certFile}, not ${other}; stop it first to change its CA bundle [BAD_OPTION]\nefsctl: ${RUNNING_TUNNEL_HINT}\n`);
    // The same bundle named explicitly is the same tunnel.
    const same = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', `${OPTS},cafile=${testCerts().ca.certFile}`);
    expect(same.created).to.equal(false);
  });

  it('add --json has the documented shape', async () => {
    const a = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', OPTS);
    expect(Object.keys(a).sort()).to.deep.equal(['created', 'tunnel']);
    expect(Object.keys(a.tunnel).sort()).to.deep.equal([
      'bytes', 'client_certificate', 'connections', 'created', 'extra_ports', 'fs_id', 'health', 'last_connected_at', 'last_error', 'mounts', 'netns', 'ocsp', 'options', 'port', 'restarts', 'source', 'state', 'target',
    ]);
    expect(Object.keys(a.tunnel.health).sort()).to.deep.equal(['connection', 'mounts_failing', 'probe', 'probing']);
    expect(a.tunnel).to.deep.include({
      fs_id: FS_ID, extra_ports: [], state: 'listening', source: 'efsctl', mounts: [], last_error: null, last_connected_at: null, ocsp: false, netns: null,
      connections: { active: 0, ok: 0, failed: 0 }, bytes: { upstream: 0, downstream: 0 },
      target: { dns_name: FS_NAME, cert_name: FS_NAME, address: '127.0.0.13', port: 2049, region: 'us-east-1' },
    });
    expect(a.tunnel.port).to.be.within(FIRST, FIRST + 49);
  });

  it('takes the region from AWS_REGION in efsctl\'s environment', async () => {
    const r = await run(join(BIN, 'efsctl'), ['--socket', daemon.socket, 'add', 'fs-0000bbbb', '--json'], {
      env: { ...process.env, AWS_REGION: 'eu-west-3' },
    });
    expect(r.code).to.equal(0);
    expect((JSON.parse(r.stdout) as AddResult).tunnel.target.dns_name).to.equal('fs-0000bbbb.efs.eu-west-3.amazonaws.com');
  });

  it('list shows every tunnel as a table, and --json as {tunnels: [...]}', async () => {
    const human = await daemon.efsctl('list');
    expect(human.code).to.equal(0);
    const lines = human.stdout.trim().split('\n');
    expect(lines[0]).to.match(/^FS_ID\s+PORT\s+TARGET\s+STATE\s+HEALTH\s+MOUNTS\s+CONNS\s+UP\s+DOWN\s+LAST_ERROR$/);
    // Every tunnel the state directory holds, sorted by file system ID.
    const all = records().map((f) => f.replace(/\.json$/, ''));
    expect(all).to.include.members(['fs-0000aaaa', FS_ID]);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).to.deep.equal(all);
    const json = await daemon.efsctlJson<{ tunnels: TunnelView[]; unencrypted_mounts: unknown[] }>('list');
    expect(Object.keys(json).sort()).to.deep.equal(['tunnels', 'unencrypted_mounts']);
    expect(json.tunnels.map((t) => t.fs_id)).to.deep.equal(all);
  });

  it('status shows one tunnel in detail with its history', async () => {
    const human = await daemon.efsctl('status', FS_ID);
    expect(human.code).to.equal(0);
    expect(human.stdout).to.contain(`File system:   ${FS_ID}`).and.contain('State:         listening').and.contain(`certificate must name ${FS_NAME}`);
    expect(human.stdout).to.match(/History:\n {2}\S+ {2}listening/);
    // This daemon runs with health.probe_interval 0: no probe is pending, none will come.
    expect(human.stdout).to.contain('Health:        off\n').and.contain('Last probe:    off (health.probe_interval is 0)\n');
    const list = await daemon.efsctl('list');
    expect(list.stdout.split('\n').find((l) => l.startsWith(FS_ID))?.split(/\s+/)[4], 'HEALTH column').to.equal('off');
    const json = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    expect(json.health).to.deep.include({ probing: false, probe: null });
    expect(json.handshake_failures).to.deep.equal({});
    expect(json.history[0]).to.include({ event: 'listening' });
  });

  it('status prints what to do about the last error, and leaves that line out for a code this efsctl does not know (a newer daemon)', async () => {
    const json = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    const at = new Date().toISOString();
    const known = tunnelDetail({ ...json, last_error: { code: 'PORT_TAKEN', message: 'Port 1 is taken', at } });
    expect(known).to.contain(`Last error:    PORT_TAKEN at ${at}: Port 1 is taken\nWhat to do:    ${ERRORS.PORT_TAKEN.hint}\n`);
    const unknown = tunnelDetail({ ...json, last_error: { code: 'FROM_A_NEWER_DAEMON' as ErrorCode, message: 'something new', at } });
    expect(unknown).to.contain(`Last error:    FROM_A_NEWER_DAEMON at ${at}: something new\nHealth:`);
    expect(unknown).not.to.contain('What to do:');
  });

  it('status of an unknown file system exits 1 with TUNNEL_NOT_FOUND', async () => {
    const r = await daemon.efsctl('status', 'fs-0badf00d');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal('efsctl: No tunnel for fs-0badf00d [TUNNEL_NOT_FOUND]\nefsctl: Run `efsctl list` to see the tunnels, or `efsctl add FS_ID` to start one.\n');
  });

  it('with --json, a failure also prints {error: {code, message, hint}} on stdout', async () => {
    const r = await daemon.efsctl('status', 'fs-0badf00d', '--json');
    expect(r.code).to.equal(1);
    expect(JSON.parse(r.stdout)).to.deep.equal({
      error: { code: 'TUNNEL_NOT_FOUND', message: 'No tunnel for fs-0badf00d', hint: 'Run `efsctl list` to see the tunnels, or `efsctl add FS_ID` to start one.' },
    });
  });

  describe('bad input changes nothing', () => {
    let before: string[];
    let beforeList: string;
    beforeEach(async () => {
      before = records();
      beforeList = (await daemon.efsctl('list', '--json')).stdout;
    });
    afterEach(async () => {
      expect(records(), 'state dir unchanged').to.deep.equal(before);
      expect((await daemon.efsctl('list', '--json')).stdout, 'tunnels unchanged').to.equal(beforeList);
    });

    const cases: Array<[string, string[], number, string]> = [
      ['a bad fs id', ['add', 'fs-XYZ'], 1, 'efsctl: Invalid file system name: fs-XYZ [BAD_FS_ID]'],
      ['an unknown option', ['add', 'fs-0000cccc', '-o', 'region=us-east-1,bogus'], 1, 'efsctl: Unknown tunnel option: "bogus" [UNKNOWN_OPTION]'],
      ['port together with tls', ['add', 'fs-0000cccc', '-o', 'tls,port=2049'], 1, 'efsctl: The "port" and "tls" options are mutually exclusive [BAD_OPTION]'],
      ['a non-integer tlsport', ['add', 'fs-0000cccc', '-o', 'tls,tlsport=2x'], 1, 'efsctl: tlsport option [2x] is not an integer [BAD_OPTION]'],
      ['a port outside the range', ['add', 'fs-0000cccc', '-o', 'tlsport=80,region=us-east-1'], 1,
        `efsctl: tlsport 80 is outside the configured port range ${FIRST}-${FIRST + 49} [PORT_OUT_OF_RANGE]`],
      ['a tlsport used by another tunnel', ['add', 'fs-0000cccc', '-o', `tlsport=${FIRST + 7},region=us-east-1`], 1,
        `efsctl: Port ${FIRST + 7} is already used by the tunnel for fs-0000aaaa [PORT_TAKEN]`],
      ['a different port for an existing tunnel', ['add', 'fs-0000aaaa', '-o', `tlsport=${FIRST + 8},region=us-east-1`], 1,
        `efsctl: fs-0000aaaa already has a tunnel on port ${FIRST + 7}; stop it first to move it to ${FIRST + 8} [PORT_TAKEN]\nefsctl: ${RUNNING_TUNNEL_HINT}\n`],
      ['a different target for an existing tunnel', ['add', FS_ID, '-o', 'mounttargetip=127.0.0.99,region=us-east-1'], 1,
        `efsctl: ${FS_ID} already has a tunnel to 127.0.0.13 (${FS_NAME}); stop it first to change its target [BAD_OPTION]\nefsctl: ${RUNNING_TUNNEL_HINT}\n`],
      ['no region', ['add', 'fs-0000cccc'], 1, 'efsctl: Cannot determine the AWS region of fs-0000cccc'],
      ['notls', ['add', 'fs-0000cccc', '-o', 'notls'], 1, 'efs-relay only carries EFS traffic over TLS [BAD_OPTION]'],
      ['fsap (not supported yet)', ['add', 'fs-0000cccc', '-o', 'tls,fsap'], 1,
        'efsctl: The "fsap" option is not supported yet: this release does not implement efs-utils\' "fsap" option [BAD_OPTION]\n'
        + 'efsctl: Leave the option out if the mount does not need it; a mount that needs it cannot go through efs-relay in this release (the README lists the options it takes).\n'],
      ['no verb', [], 2, 'efsctl: No verb given'],
      ['an unknown verb', ['mount', FS_ID], 2, 'efsctl: Unknown verb "mount"'],
      ['a missing fs id', ['add'], 2, 'efsctl: "add" takes 1 argument (FS_ID), got 0'],
      ['a flag the verb does not take', ['add', FS_ID, '--force'], 2, 'efsctl: "add" does not take --force'],
      ['an unknown flag', ['list', '--everything'], 2, "efsctl: Unknown option '--everything'"],
    ];
    for (const [what, args, code, message] of cases) {
      it(`rejects ${what} with exit ${code}`, async () => {
        const env = { ...process.env };
        delete env.AWS_REGION;
        delete env.AWS_DEFAULT_REGION;
        const r = await run(join(BIN, 'efsctl'), ['--socket', daemon.socket, ...args], { env });
        expect(r.code).to.equal(code);
        expect(r.stderr).to.contain(message);
        expect(r.stdout).to.equal('');
      });
    }

    it('rejects a tlsport that another process holds, with PORT_TAKEN', async () => {
      const port = await freePort();
      const squatter: Server = createServer();
      await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', () => r()));
      try {
        const r = await daemon.efsctl('add', 'fs-0000cccc', '-o', `tlsport=${port},region=us-east-1`);
        expect(r.code).to.equal(1);
        expect(r.stderr).to.contain(`Port ${port} on 127.0.0.1 is already in use by another process [PORT_TAKEN]`);
      } finally {
        squatter.close();
      }
    });
  });

  it('stop removes the tunnel and its record, and frees the port', async () => {
    const { tunnel } = await daemon.efsctlJson<AddResult>('add', 'fs-0000dddd', '-o', 'region=us-east-1');
    const r = await daemon.efsctl('stop', 'fs-0000dddd');
    expect(r.code).to.equal(0);
    expect(r.stdout).to.equal(`fs-0000dddd: tunnel on port ${tunnel.port} stopped\n`);
    expect(records()).to.not.include('fs-0000dddd.json');
    await expectPortFree(tunnel.port);
  });

  it('stop of an unknown tunnel exits 1 with TUNNEL_NOT_FOUND', async () => {
    const r = await daemon.efsctl('stop', 'fs-0000eeee');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('[TUNNEL_NOT_FOUND]');
  });

  it('version prints the CLI and daemon versions, and --json both', async () => {
    const r = await daemon.efsctl('version');
    expect(r.code).to.equal(0);
    expect(r.stdout).to.match(/^efsctl 0\.1\.0\nefs-relayd 0\.1\.0 \(pid \d+, Node v\d+\.\d+\.\d+, OpenSSL \S+\)\n$/);
    const j = await daemon.efsctlJson<{ efsctl: string; daemon: { version: string; protocol: number; config: Record<string, unknown> } }>('version');
    expect(j.efsctl).to.equal('0.1.0');
    expect(j.daemon).to.include({ version: '0.1.0', protocol: 1 });
    expect(Object.keys(j.daemon).sort()).to.deep.equal(['config', 'instance_region', 'node', 'openssl', 'pid', 'protocol', 'started_at', 'version']);
    expect(j.daemon.config).to.deep.include({ file: daemon.configFile, last_reload_successful: true, restart_needed: [] });
    expect(Object.keys(j.daemon.config).sort()).to.deep.equal(['file', 'last_reload_at', 'last_reload_successful', 'loaded_at', 'restart_needed']);
  });

  it('exits 3 and says how to start the daemon when it cannot be reached', async () => {
    const sock = join(tempDir('nosock'), 'control.sock');
    for (const args of [['list'], ['add', FS_ID, '-o', 'region=us-east-1'], ['version']]) {
      const r = await run(join(BIN, 'efsctl'), ['--socket', sock, ...args]);
      expect(r.code, args.join(' ')).to.equal(3);
      expect(r.stderr).to.contain(`Cannot reach efs-relayd at ${sock}: no socket there (is the daemon running?) [DAEMON_UNREACHABLE]`);
      expect(r.stderr).to.contain('systemctl start efs-relayd');
    }
  });

  it('says the daemon runs but dropped the connection, and to look for daemon.fd_limit, not to start it, when its socket closes a connection unanswered (as a daemon out of file descriptors does)', async () => {
    // What libuv does with a waiting connection when the daemon has no descriptor left to accept it: accept and close.
    const sock = join(tempDir('dropping'), 'control.sock');
    const server = createServer((c) => c.destroy());
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const r = await run(join(BIN, 'efsctl'), ['--socket', sock, 'list']);
      expect(r.code).to.equal(3);
      expect(r.stderr).to.match(new RegExp(`^efsctl: (efs-relayd at ${escapeRegExp(sock)} took the connection and dropped it before answering "list" \\((EPIPE|ECONNRESET)\\)|efs-relayd closed ${escapeRegExp(sock)} without answering "list") \\[DAEMON_UNREACHABLE\\]\n`));
      expect(r.stderr).to.contain('efsctl: efs-relayd is running but could not take the connection: see its log (journalctl -u efs-relayd) for daemon.fd_limit');
      expect(r.stderr).to.not.contain('systemctl start');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('--wait holds a request until a daemon that is still starting answers, saying once what it waits for', async () => {
    const starting = new Daemon(daemonConfig(21700));
    const child = spawn(join(BIN, 'efsctl'), ['--socket', starting.socket, '--wait', '30', 'add', 'fs-0000bbbb', '-o', OPTS], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    try {
      await waitFor('efsctl saying it waits', () => stderr.includes('waiting up to 30 s'));
      await sleep(500); // several more tries
      expect(child.exitCode, 'still waiting while no daemon runs').to.equal(null);
      expect(stderr).to.equal(`efsctl: Cannot reach efs-relayd at ${starting.socket}: no socket there (is the daemon running?); waiting up to 30 s for it to start\n`);
      await starting.start();
      expect(await exited).to.equal(0);
      expect(stdout).to.match(/^fs-0000bbbb: tunnel started on 127\.0\.0\.1:217\d\d → 127\.0\.0\.13:2049/);
    } finally {
      child.kill();
      await starting.stop();
    }
  });

  it('--wait gives up after its seconds with exit 3, and takes only a number of seconds', async () => {
    const sock = join(tempDir('nosock'), 'control.sock');
    const r = await run(join(BIN, 'efsctl'), ['--socket', sock, '--wait', '1.5', 'list']);
    expect(r.code).to.equal(3);
    expect(r.stderr.split('\n').filter((l) => l.includes('waiting up to 1.5 s')), 'said once, after a second').to.have.length(1);
    const short = await run(join(BIN, 'efsctl'), ['--socket', sock, '--wait', '0.5', 'list']);
    expect(short.code).to.equal(3);
    expect(short.stderr, 'a wait under a second is not reported').to.not.contain('waiting up to');
    expect(r.stderr).to.contain(`Cannot reach efs-relayd at ${sock}: no socket there (is the daemon running?) [DAEMON_UNREACHABLE]`);
    for (const [args, msg] of [
      [['--wait', 'soon', 'list'], '--wait takes a number of seconds, got "soon"'],
      [['--wait=-1', 'list'], '--wait takes a number of seconds, got "-1"'],
      [['--wait', '5', 'doctor'], '"doctor" does not take --wait'],
    ] as Array<[string[], string]>) {
      const bad = await run(join(BIN, 'efsctl'), ['--socket', sock, ...args]);
      expect(bad.code, args.join(' ')).to.equal(2);
      expect(bad.stderr).to.contain(`efsctl: ${msg} [USAGE]`);
    }
  });

  it('--help prints usage with the exit codes and exits 0', async () => {
    const r = await run(join(BIN, 'efsctl'), ['--help']);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.contain('Usage: efsctl').and.contain('Exit codes: 0 done, 1 the request failed, 2 bad usage, 3 the daemon cannot be reached.');
  });

  it('offers every verb of --help in the bash completion and in the README\'s verb table', async () => {
    const help = (await run(join(BIN, 'efsctl'), ['--help'])).stdout;
    const verbs = [...help.slice(help.indexOf('Verbs:'), help.indexOf('Options:')).matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]!).sort();
    expect(verbs).to.include.members(['add', 'reload', 'version']);
    const completion = readFileSync(join(ROOT, 'packaging/completion/efsctl.bash'), 'utf8');
    expect((/verbs="([^"]*)"/.exec(completion)?.[1] ?? '').split(' ').sort()).to.deep.equal(verbs);
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(verbs.filter((v) => !readme.includes(`| \`${v}`))).to.deep.equal([]);
  });
});
