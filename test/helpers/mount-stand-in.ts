// A recording stand-in for mount.nfs4 and umount (no kernel NFS client runs
// here). It logs each call's argv and environment, edits a file standing in
// for /proc/mounts as the real commands would, and can be told to fail.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Call {
  argv: string[];
  env: Record<string, string>;
}

export interface Behaviour {
  /** Fail this many calls, then succeed. */
  fail?: number;
  message?: string;
  code?: number;
  /** On success, write zeros to this file until its file system is full (ENOSPC). */
  fillFile?: string;
  /**
   * Before mounting, talk to 127.0.0.1 at the options' port= as mount.nfs4 talks to the server: send a byte and wait
   * for one. A connection closed before any reply is opened again after 100 ms, as the kernel's NFS client
   * reconnects, until `giveUpMs` (10 s) has passed; then the mount fails as mount.nfs4 reports it, "Connection timed
   * out" (or "Connection reset by peer" when the last connection was closed on it).
   */
  reach?: boolean;
  giveUpMs?: number;
}

const SCRIPT = `#!/usr/bin/env node
// Written by the efs-relay tests: stands in for mount.nfs4 / umount.
const fs = require('node:fs');
const path = require('node:path');
const dir = __dirname;
const role = path.basename(process.argv[1]).startsWith('umount') ? 'umount' : 'mount';
const args = process.argv.slice(2);
fs.appendFileSync(path.join(dir, role + '-calls.jsonl'), JSON.stringify({ argv: [process.argv[1], ...args], env: process.env }) + '\\n');
const lock = path.join(dir, 'proc-mounts.lock');
// The lock holds its holder's pid (made whole, then renamed into place): a stand-in killed while it holds the lock
// (the daemon stops a mount that cannot succeed) must not leave every later one waiting.
function locked(fn) {
  const mine = lock + '.' + process.pid;
  for (;;) {
    fs.mkdirSync(mine, { recursive: true });
    fs.writeFileSync(path.join(mine, 'pid'), String(process.pid));
    try { fs.renameSync(mine, lock); break; } catch {}
    let holder = 0;
    try { holder = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8')); } catch {}
    let dead = false;
    if (holder > 0) { try { process.kill(holder, 0); } catch (e) { dead = e.code === 'ESRCH'; } }
    if (dead) {
      const gone = lock + '.dead.' + holder;
      try { fs.renameSync(lock, gone); fs.rmSync(gone, { recursive: true, force: true }); } catch {}
      continue;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
  }
  // Renamed away before it is emptied: an empty directory at the lock's name would let the next rename replace it.
  try { return fn(); } finally { fs.renameSync(lock, mine + '.done'); fs.rmSync(mine + '.done', { recursive: true, force: true }); }
}
let fillFile = null;
let reach = false;
let giveUpMs = 10000;
const failed = locked(() => {
  const file = path.join(dir, role + '-behaviour.json');
  if (!fs.existsSync(file)) return null;
  const b = JSON.parse(fs.readFileSync(file, 'utf8'));
  fillFile = b.fillFile || null;
  reach = Boolean(b.reach);
  giveUpMs = b.giveUpMs || giveUpMs;
  if (!b.fail) return null;
  b.fail--;
  fs.writeFileSync(file, JSON.stringify(b));
  return b;
});
if (failed) {
  process.stderr.write((failed.message || role + ': failed') + '\\n');
  process.exit(failed.code || 32);
}
if (reach && role === 'mount') {
  const port = Number(/(?:^|,)port=(\\d+)/.exec(args[3] || '')?.[1]);
  let answered = false;
  let reset = false;
  const timer = setTimeout(() => {
    process.stderr.write('mount.nfs4: Connection ' + (reset ? 'reset by peer' : 'timed out') + '\\n');
    process.exit(32);
  }, giveUpMs);
  const attempt = () => {
    const sock = require('node:net').connect({ host: '127.0.0.1', port });
    sock.on('connect', () => sock.write('x'));
    sock.on('data', () => { answered = true; clearTimeout(timer); sock.destroy(); mount(); });
    sock.on('error', () => {});
    sock.on('close', () => {
      if (answered) return;
      reset = true;
      setTimeout(attempt, 100);
    });
  };
  attempt();
} else {
  mount();
}
function mount() {
const esc = (s) => s.replace(/[ \\t\\n\\\\]/g, (c) => '\\\\' + c.charCodeAt(0).toString(8).padStart(3, '0'));
const procMounts = path.join(dir, 'proc-mounts');
locked(() => {
  const lines = fs.readFileSync(procMounts, 'utf8').split('\\n').filter(Boolean);
  if (role === 'mount') {
    const [device, target, , opts] = args;
    lines.push(esc(device) + ' ' + esc(target) + ' nfs4 rw,relatime,vers=4.1,' + opts.replace(/nfsvers=[^,]*,?/, '') + ',addr=127.0.0.1 0 0');
  } else {
    const target = esc(args[args.length - 1]);
    const i = lines.findLastIndex((l) => l.split(' ')[1] === target);
    if (i < 0) { process.stderr.write('umount: ' + args[args.length - 1] + ': not mounted.\\n'); process.exit(32); }
    lines.splice(i, 1);
  }
  fs.writeFileSync(procMounts + '.tmp', lines.map((l) => l + '\\n').join(''));
  fs.renameSync(procMounts + '.tmp', procMounts);
});
if (fillFile) {
  const fd = fs.openSync(fillFile, 'w');
  try { for (;;) fs.writeSync(fd, Buffer.alloc(4096)); } catch (e) { if (e.code !== 'ENOSPC') throw e; } finally { fs.closeSync(fd); }
}
}
`;

export class MountStandIn {
  readonly mountCommand: string;
  readonly umountCommand: string;
  readonly procMounts: string;

  constructor(readonly dir: string) {
    this.mountCommand = join(dir, 'mount.nfs4-stand-in.cjs');
    this.umountCommand = join(dir, 'umount-stand-in.cjs');
    this.procMounts = join(dir, 'proc-mounts');
    for (const f of [this.mountCommand, this.umountCommand]) {
      writeFileSync(f, SCRIPT);
      chmodSync(f, 0o755);
    }
    if (!existsSync(this.procMounts)) writeFileSync(this.procMounts, '');
  }

  calls(role: 'mount' | 'umount' = 'mount'): Call[] {
    const f = join(this.dir, `${role}-calls.jsonl`);
    if (!existsSync(f)) return [];
    return readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Call);
  }

  behave(role: 'mount' | 'umount', b: Behaviour): void {
    writeFileSync(join(this.dir, `${role}-behaviour.json`), JSON.stringify(b));
  }

  /** Lines of the /proc/mounts stand-in. */
  mounts(): string[] {
    return readFileSync(this.procMounts, 'utf8').split('\n').filter(Boolean);
  }

  /** What a plain `umount` outside the daemon does. */
  removeMount(dir: string): void {
    writeFileSync(this.procMounts, this.mounts().filter((l) => l.split(' ')[1] !== dir).map((l) => l + '\n').join(''));
  }

  addMountLine(line: string): void {
    writeFileSync(this.procMounts, [...this.mounts(), line].map((l) => l + '\n').join(''));
  }
}
