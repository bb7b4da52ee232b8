// Bad input of every kind gets a clear error, changes nothing, and leaves
// the daemon serving: config files, state files and control requests.
import { expect } from 'chai';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { BIN, Daemon, run, sleep, tempDir, waitFor } from './helpers/daemon.js';
import { call } from '../cli/client.js';
import { expectPortTaken } from './helpers/client.js';
import { daemonConfig, testCerts } from './helpers/fixtures.js';
import type { TunnelDetail } from '../daemon/tunnels.js';

/** A raw control-socket client: send lines, read response lines. */
class RawControl {
  private buf = '';
  private waiting: Array<(line: string) => void> = [];
  constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        this.waiting.shift()?.(line);
      }
    });
  }
  static open(path: string): Promise<RawControl> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(new RawControl(s)));
      s.once('error', reject);
    });
  }
  send(raw: string): Promise<Record<string, any>> {
    return new Promise((resolve) => {
      this.waiting.push((line) => resolve(JSON.parse(line) as Record<string, any>));
      this.sock.write(raw);
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

describe('bad control requests', function () {
  let daemon: Daemon;
  let ctl: RawControl;
  before(async () => {
    daemon = await new Daemon(daemonConfig(20500)).start();
    ctl = await RawControl.open(daemon.socket);
  });
  after(async () => {
    ctl?.close();
    await daemon?.stop();
  });

  it('makes the control socket mode 0600', () => {
    expect(statSync(daemon.socket).mode & 0o777).to.equal(0o600);
  });

  it('answers a valid request with the protocol version and its id', async () => {
    expect(await ctl.send('{"v":1,"id":7,"method":"ping"}\n')).to.deep.equal({ v: 1, id: 7, ok: true, result: { pong: true } });
  });

  const cases: Array<[string, string, string]> = [
    ['malformed JSON', '{"v":1,"id":1,"method":\n', 'CONTROL_BAD_REQUEST'],
    ['a JSON array', '[1,2,3]\n', 'CONTROL_BAD_REQUEST'],
    ['a string protocol version', '{"v":"1","id":1,"method":"list"}\n', 'CONTROL_BAD_REQUEST'],
    ['another protocol version', '{"v":2,"id":1,"method":"list"}\n', 'CONTROL_VERSION_MISMATCH'],
    ['a numeric method', '{"v":1,"id":1,"method":5}\n', 'CONTROL_BAD_REQUEST'],
    ['an object id', '{"v":1,"id":{},"method":"list"}\n', 'CONTROL_BAD_REQUEST'],
    ['params as a list', '{"v":1,"id":1,"method":"add","params":[]}\n', 'CONTROL_BAD_REQUEST'],
    ['an unknown method', '{"v":1,"id":1,"method":"format_disk"}\n', 'CONTROL_UNKNOWN_METHOD'],
    ['a prototype method name', '{"v":1,"id":1,"method":"toString"}\n', 'CONTROL_UNKNOWN_METHOD'],
    ['a wrongly typed fs_id', '{"v":1,"id":1,"method":"add","params":{"fs_id":42}}\n', 'CONTROL_BAD_REQUEST'],
    ['a wrongly typed force flag', '{"v":1,"id":1,"method":"stop","params":{"fs_id":"fs-1","force":"yes"}}\n', 'CONTROL_BAD_REQUEST'],
    ['a bad fs id', '{"v":1,"id":1,"method":"add","params":{"fs_id":"fs-../../etc"}}\n', 'BAD_FS_ID'],
  ];
  for (const [what, line, code] of cases) {
    it(`answers ${what} with ${code} and keeps the connection open`, async () => {
      const res = await ctl.send(line);
      expect(res.v).to.equal(1);
      expect(res.ok).to.equal(false);
      expect(res.error.code).to.equal(code);
      expect(res.error.message).to.be.a('string').and.not.equal('');
      expect(res.error.hint).to.be.a('string').and.not.equal('');
      expect(await ctl.send('{"v":1,"id":2,"method":"ping"}\n')).to.deep.include({ ok: true });
    });
  }

  it('answers an oversized line with CONTROL_REQUEST_TOO_LARGE, drops it, and serves the next request', async () => {
    const huge = '{"v":1,"id":1,"method":"add","params":{"fs_id":"' + 'a'.repeat(200 * 1024) + '"}}\n';
    const res = await ctl.send(huge);
    expect(res.error.code).to.equal('CONTROL_REQUEST_TOO_LARGE');
    expect(await ctl.send('{"v":1,"id":3,"method":"ping"}\n')).to.deep.equal({ v: 1, id: 3, ok: true, result: { pong: true } });
  });

  it('still serves new connections and made no tunnel after all of that', async () => {
    const r = await daemon.efsctlJson<{ tunnels: unknown[] }>('list');
    expect(r.tunnels).to.deep.equal([]);
    expect(daemon.exitCode).to.equal(null);
  });
});

describe('bad state files', function () {
  it('logs, counts and skips corrupt and foreign files without deleting them, and restores the valid ones with their extra ports', async () => {
    const dir = tempDir('state');
    const state = join(dir, 'state');
    mkdirSync(state);
    const good = {
      version: 1, fs_id: 'fs-11112222', port: 20560,
      target: { dns_name: 'fs-11112222.efs.us-east-1.amazonaws.com', address: '127.0.0.11', port: 2049, region: 'us-east-1' },
      options: { mounttargetip: '127.0.0.11', region: 'us-east-1' }, created: '2026-11-27T00:00:00.000Z', source: 'efsctl', mounts: [],
      extra_ports: [20561],
    };
    const files: Record<string, string> = {
      'fs-11112222.json': JSON.stringify(good),
      'fs-33334444.json': '{"version":1,"fs_id":"fs-33334444",', // truncated
      'fs-55556666.json': JSON.stringify({ ...good, fs_id: 'fs-55556666', port: 'twenty' }),
      'fs-77778888.json': JSON.stringify({ ...good, fs_id: 'fs-77778888' }), // same port as fs-11112222
      'fs-9999aaaa.json': JSON.stringify({ ...good, fs_id: 'fs-other' }), // name and content disagree
      'notes.txt': 'hello',
      'fs-bbbbcccc.json': JSON.stringify({ ...good, fs_id: 'fs-bbbbcccc', version: 99 }),
      'fs-ddddeeee.json': JSON.stringify({ ...good, fs_id: 'fs-ddddeeee', port: 20561, extra_ports: [] }), // fs-11112222's extra port
      'fs-ffff0000.json': JSON.stringify({ ...good, fs_id: 'fs-ffff0000', port: 20562, extra_ports: [20562] }),
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(join(state, name), text);
    const daemon = await new Daemon(daemonConfig(20550, { state_dir: state }), dir).start();
    try {
      const list = await daemon.efsctlJson<{ tunnels: Array<{ fs_id: string; port: number; extra_ports: number[] }> }>('list');
      expect(list.tunnels.map((t) => [t.fs_id, t.port, t.extra_ports])).to.deep.equal([['fs-11112222', 20560, [20561]]]);
      await expectPortTaken(20561);
      const warnings = daemon.logs.split('\n').filter((l) => l.includes('state.file_invalid'));
      expect(warnings).to.have.length(8);
      for (const w of warnings) expect(w).to.match(/ warn state\.file_invalid fs=- code=STATE_FILE_INVALID msg=".*; skipped \(not deleted\)"/);
      expect(daemon.logs).to.contain('invalid_state_files=8');
      expect(daemon.logs).to.match(/fs-ddddeeee\.json: port 20561 is already claimed by fs-11112222/);
      expect(daemon.logs).to.match(/fs-ffff0000\.json: \\"extra_ports\\" must be a list of integer ports, each other than \\"port\\" and the others/);
      expect(daemon.logs).to.match(/fs-33334444\.json: not valid JSON/);
      expect(daemon.logs).to.match(/fs-77778888\.json: port 20560 is already claimed by fs-11112222/);
      expect(daemon.logs).to.match(/fs-bbbbcccc\.json: unsupported record version 99/);
      expect(daemon.logs).to.match(/notes\.txt: not a tunnel record/);
      for (const [name, text] of Object.entries(files)) expect(readFileSync(join(state, name), 'utf8')).to.equal(text);
      expect(readdirSync(state).filter((n) => n !== 'control.sock').sort()).to.deep.equal(Object.keys(files).sort());
    } finally {
      await daemon.stop();
    }
  });

  it('ignores a malformed DNS answer kept in a record, not the tunnel: the tunnel runs and knows no earlier answer', async () => {
    const dir = tempDir('state');
    const state = join(dir, 'state');
    mkdirSync(state);
    const name = 'fs-12121212.efs.us-east-1.amazonaws.com';
    const rec = {
      version: 1, fs_id: 'fs-12121212', port: 20565,
      target: { dns_name: name, address: name, port: 2049, region: 'us-east-1' },
      options: { region: 'us-east-1' }, created: '2026-11-27T00:00:00.000Z', source: 'efsctl', mounts: [],
      dns_answer: { name, addresses: ['mount-target.example.com'], answered_at: '2026-11-27T00:00:01.000Z' }, // not an address
    };
    writeFileSync(join(state, 'fs-12121212.json'), JSON.stringify(rec));
    const daemon = await new Daemon(daemonConfig(20550, { state_dir: state }), dir).start();
    try {
      const s = await daemon.efsctlJson<TunnelDetail>('status', 'fs-12121212');
      expect([s.state, s.dns]).to.deep.equal(['listening', null]);
      expect(daemon.logs).to.not.contain('state.file_invalid');
      expect(daemon.logs).to.contain('invalid_state_files=0');
    } finally {
      await daemon.stop();
    }
  });

  it('logs, counts and skips bad files among the ports of left-behind mounts without deleting them', async () => {
    const dir = tempDir('state');
    const left = join(dir, 'state', 'left-mounted');
    mkdirSync(left, { recursive: true });
    const files: Record<string, string> = {
      '20561.json': '{"port":20561,', // truncated
      '20562.json': JSON.stringify({ port: 20563, fs_id: 'fs-11112222', mounts: ['/mnt/a'], stopped: '2026-11-27T00:00:00.000Z' }),
      'notes.txt': 'hello',
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(join(left, name), text);
    const daemon = await new Daemon(daemonConfig(20550, { state_dir: join(dir, 'state') }), dir).start();
    try {
      const warnings = daemon.logs.split('\n').filter((l) => l.includes('state.file_invalid'));
      expect(warnings).to.have.length(3);
      expect(daemon.logs).to.contain('invalid_state_files=3');
      expect(daemon.logs).to.match(/left-mounted\/20561\.json: not valid JSON/);
      // The log line quotes a message with quotes in it as JSON.
      expect(daemon.logs).to.match(/left-mounted\/20562\.json: \\"port\\" must be 20562, as in the file name/);
      expect(daemon.logs).to.match(/left-mounted\/notes\.txt: not a left-behind mount/);
      for (const [name, text] of Object.entries(files)) expect(readFileSync(join(left, name), 'utf8')).to.equal(text);
    } finally {
      await daemon.stop();
    }
  });

  it('writes one tunnel record with the documented fields and leaves no temp file behind', async () => {
    const daemon = await new Daemon(daemonConfig(20570)).start();
    try {
      const r = await daemon.efsctlJson<{ tunnel: { port: number } }>('add', 'fs-12345678', '-o', 'region=us-east-1,mounttargetip=127.0.0.12');
      const rec = JSON.parse(readFileSync(join(daemon.stateDir, 'fs-12345678.json'), 'utf8')) as Record<string, unknown>;
      expect(Object.keys(rec).sort()).to.deep.equal(['created', 'fs_id', 'mounts', 'options', 'port', 'source', 'target', 'version']);
      expect(rec).to.deep.include({
        version: 1, fs_id: 'fs-12345678', port: r.tunnel.port, source: 'efsctl', mounts: [],
        options: { region: 'us-east-1', mounttargetip: '127.0.0.12' },
        target: { dns_name: 'fs-12345678.efs.us-east-1.amazonaws.com', address: '127.0.0.12', port: 2049, region: 'us-east-1' },
      });
      expect(readdirSync(daemon.stateDir).filter((n) => n.includes('.tmp-'))).to.deep.equal([]);
    } finally {
      await daemon.stop();
    }
  });
});

/** The daemon tries an unreadable CA bundle again this often (README, Troubleshooting). */
const LISTEN_RETRY_S = 5;

describe('a missing CA bundle', function () {
  it('keeps a restored tunnel in error with CA_BUNDLE_UNREADABLE, and starts it once the bundle appears, listed all along', async () => {
    const dir = tempDir('nocafile');
    const state = join(dir, 'state');
    mkdirSync(state);
    const caFile = join(dir, 'later-ca.pem');
    writeFileSync(join(state, 'fs-0cafe000.json'), JSON.stringify({
      version: 1, fs_id: 'fs-0cafe000', port: 20620,
      target: { dns_name: 'fs-0cafe000.efs.us-east-1.amazonaws.com', address: '127.0.0.27', port: 2049, region: 'us-east-1' },
      options: { region: 'us-east-1' }, created: '2026-11-27T00:00:00.000Z', source: 'manual', mounts: [],
    }));
    const daemon = await new Daemon(daemonConfig(20610, { state_dir: state, tls: { ca_file: caFile } }), dir).start();
    try {
      const before = await daemon.efsctlJson<{ state: string; last_error: { code: string } | null }>('status', 'fs-0cafe000');
      expect(before.state).to.equal('error');
      expect(before.last_error?.code).to.equal('CA_BUNDLE_UNREADABLE');
      expect(daemon.logs).to.match(/error tunnel\.start_failed fs=fs-0cafe000 code=CA_BUNDLE_UNREADABLE msg=".*; retrying every 5 s"/);
      // list, as fast as the daemon answers, while the tunnel waits for its bundle and then starts: the tunnel
      // must never be missing from it (it used to be, for the moment its retry read the bundle).
      let polling = true;
      let answers = 0;
      const missing: number[] = [];
      const poll = (async () => {
        while (polling) {
          const { tunnels } = (await call(daemon.socket, 'list')) as { tunnels: Array<{ fs_id: string }> };
          if (!tunnels.some((t) => t.fs_id === 'fs-0cafe000')) missing.push(answers);
          answers++;
        }
      })();
      try {
        await sleep(LISTEN_RETRY_S * 1000 + 500); // one retry that still finds no bundle
        copyFileSync(testCerts().ca.certFile, caFile);
        await waitFor('the tunnel to start', async () =>
          (await daemon.efsctlJson<{ state: string }>('status', 'fs-0cafe000')).state === 'listening', 10_000);
      } finally {
        polling = false;
        await poll;
      }
      expect(answers).to.be.above(100);
      expect(missing, 'answers of list without the tunnel').to.deep.equal([]);
      expect(daemon.logs.split('tunnel.start_failed').length - 1, 'the failure is logged once').to.equal(1);
    } finally {
      await daemon.stop();
    }
  });
});

describe('bad config files', function () {
  const startWith = async (yaml: string) => {
    const dir = tempDir('cfg');
    const file = join(dir, 'config.yaml');
    writeFileSync(file, yaml);
    return { file, ...(await run(join(BIN, 'efs-relayd'), ['--config', file], { timeoutMs: 10_000 })) };
  };

  it('fails start-up with one line naming the file, line and key of an unknown key', async () => {
    const r = await startWith('state_dir: /tmp/efs-relay-never\nport_range:\n  frist: 20049\n');
    expect(r.code).to.equal(1);
    expect(r.stderr.split('\n')[0]).to.equal(
      `efs-relayd: ${r.file}:3: key "port_range.frist": unknown key (known keys in port_range: first, last) [CONFIG_INVALID]`,
    );
  });

  it('fails start-up on a wrong type, naming file, line and key', async () => {
    const r = await startWith('tls:\n  ca_file: 42\n');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`${r.file}:2: key "tls.ca_file": expected an absolute path, got 42 [CONFIG_INVALID]`);
  });

  it('fails start-up on a bad port range', async () => {
    const r = await startWith('port_range:\n  first: 30000\n  last: 29000\n');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`${r.file}:1: key "port_range": first (30000) is greater than last (29000) [CONFIG_INVALID]`);
  });

  it('--check says a good file is valid, and a missing one means the defaults, touching no state dir or socket', async () => {
    const dir = tempDir('cfg');
    const file = join(dir, 'config.yaml');
    const stateDir = join(dir, 'state');
    writeFileSync(file, `state_dir: ${stateDir}\nlog:\n  level: warn\n`);
    const good = await run(join(BIN, 'efs-relayd'), ['--check', '--config', file]);
    expect(good).to.deep.include({ code: 0, stdout: `efs-relayd: ${file} is valid: the daemon would start with it\n`, stderr: '' });
    expect(existsSync(stateDir)).to.equal(false);
    const missing = await run(join(BIN, 'efs-relayd'), ['--check', '--config', join(dir, 'none.yaml')]);
    expect(missing).to.deep.include({ code: 0, stdout: `efs-relayd: ${join(dir, 'none.yaml')} does not exist: the daemon would start with the defaults\n` });
  });

  it('--check fails, as start-up would, on an unknown key and on a non-loopback metrics address without allow_remote', async () => {
    const dir = tempDir('cfg');
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'port_range:\n  frist: 20049\n');
    const bad = await run(join(BIN, 'efs-relayd'), ['--check', '--config', file]);
    expect(bad.code).to.equal(1);
    expect(bad.stdout).to.equal('');
    expect(bad.stderr.split('\n')[0]).to.equal(`efs-relayd: ${file}:2: key "port_range.frist": unknown key (known keys in port_range: first, last) [CONFIG_INVALID]`);
    writeFileSync(file, 'metrics:\n  listen: 0.0.0.0:19804\n');
    const remote = await run(join(BIN, 'efs-relayd'), ['--check', '--config', file]);
    expect(remote.code).to.equal(1);
    expect(remote.stderr).to.equal(
      `efs-relayd: ${file}: metrics.listen 0.0.0.0:19804 is not a loopback address [CONFIG_INVALID]\n` +
      'efs-relayd: Set metrics.allow_remote: true to serve metrics beyond this host, or listen on 127.0.0.1.\n');
  });

  it('fails start-up on malformed YAML', async () => {
    const r = await startWith('tls: {ca_file: /x\n');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(new RegExp(`^efs-relayd: ${r.file}:\\d+: not valid YAML: .*\\[CONFIG_INVALID\\]`));
  });

  it('fails start-up clearly when another daemon already serves the control socket', async () => {
    const first = await new Daemon(daemonConfig(20580)).start();
    try {
      const r = await run(join(BIN, 'efs-relayd'), ['--config', first.configFile], { timeoutMs: 10_000 });
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain(`Another efs-relayd is already serving ${first.socket}`);
      expect((await first.efsctl('list')).code, 'the first daemon still serves').to.equal(0);
    } finally {
      await first.stop();
    }
  });

  it('refuses to add a tunnel when the CA bundle cannot be read, saying which file', async () => {
    const d = await new Daemon(daemonConfig(20590, { tls: { ca_file: '/nonexistent/ca.pem' } })).start();
    try {
      const r = await d.efsctl('add', 'fs-12345678', '-o', 'region=us-east-1');
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain('Cannot use CA bundle /nonexistent/ca.pem').and.contain('[CA_BUNDLE_UNREADABLE]');
    } finally {
      await d.stop();
    }
  });

  it('refuses a CA bundle with a certificate that does not parse, naming the file and which one, rather than a tunnel that trusts less than the file says', async () => {
    const dir = tempDir('badca');
    const damaged = join(dir, 'damaged.pem');
    const good = readFileSync(testCerts().ca.certFile, 'utf8');
    // The second certificate's body is cut short, as a copy interrupted half-way leaves it.
    writeFileSync(damaged, good + good.replace(/\n[A-Za-z0-9+/=]+\n-----END/, '\n-----END'));
    const d = await new Daemon(daemonConfig(21860, { tls: { ca_file: damaged } })).start();
    try {
      const r = await d.efsctl('add', 'fs-12345678', '-o', 'region=us-east-1');
      expect(r.code).to.equal(1);
      expect(r.stderr.split('\n')[0]).to.equal(`efsctl: Cannot use CA bundle ${damaged}: certificate 2 of 2 does not parse (a file still being written, or damaged) [CA_BUNDLE_UNREADABLE]`);
      expect((await d.efsctlJson<{ tunnels: unknown[] }>('list')).tunnels).to.deep.equal([]);
    } finally {
      await d.stop();
    }
  });
});
