// Many attach and detach requests at once, on the same and on different
// directories, end in a consistent state: no shared ports, no tunnel without
// an owner, records, mounts and tunnels agreeing with each other.
import { expect } from 'chai';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { call } from '../cli/client.js';
import { Daemon } from './helpers/daemon.js';
import { daemonConfig } from './helpers/fixtures.js';
import type { TunnelView } from '../daemon/tunnels.js';

const FILESYSTEMS = ['fs-0c000001', 'fs-0c000002', 'fs-0c000003', 'fs-0c000004'];
const DIRS = 10;
const OPERATIONS = 240;
const PARALLEL = 20;

describe('parallel attach and detach', function () {
  let daemon: Daemon;
  before(async () => {
    daemon = await new Daemon(daemonConfig(21000)).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  it(`ends consistent after ${OPERATIONS} attach/detach requests, ${PARALLEL} at a time`, async () => {
    const dirs = Array.from({ length: DIRS }, (_, i) => {
      const d = join(daemon.dir, 'mnt', `d${i}`);
      mkdirSync(d, { recursive: true });
      return d;
    });
    // A fixed pseudo-random sequence, so a failure can be replayed.
    let seed = 20261127;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return Math.floor(seed / 65536) % n; // the high bits: an LCG's low bits repeat quickly
    };
    const ops = Array.from({ length: OPERATIONS }, () =>
      rand(2) === 0
        ? { method: 'attach', params: { spec: FILESYSTEMS[rand(FILESYSTEMS.length)]!, dir: dirs[rand(DIRS)]!, options: 'region=us-east-1' } }
        : { method: 'detach', params: { dir: dirs[rand(DIRS)]! } },
    );
    const outcomes = new Map<string, number>();
    for (let i = 0; i < ops.length; i += PARALLEL) {
      await Promise.all(ops.slice(i, i + PARALLEL).map(async (op) => {
        let key: string;
        try {
          await call(daemon.socket, op.method, op.params);
          key = `${op.method} ok`;
        } catch (err) {
          key = `${op.method} ${(err as { code: string }).code}`;
        }
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }));
    }
    // Only the refusals a user would expect: detaching what is not mounted, or mounting over another fs.
    console.log('      outcomes:', JSON.stringify(Object.fromEntries(outcomes)));
    expect([...outcomes.keys()].sort()).to.satisfy((keys: string[]) =>
      keys.every((k) => ['attach ok', 'detach ok', 'detach NOT_MOUNTED', 'attach BAD_MOUNT_POINT'].includes(k)));
    expect(outcomes.get('attach ok'), 'some attaches succeeded').to.be.greaterThan(10);
    expect(outcomes.get('detach ok'), 'some detaches succeeded').to.be.greaterThan(10);

    const tunnels = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels;
    const ports = tunnels.map((t) => t.port);
    expect(new Set(ports).size, 'no two tunnels share a port').to.equal(ports.length);
    for (const t of tunnels) expect(t.mounts.length, `${t.fs_id} has an owner`).to.be.greaterThan(0);

    const procMounts = daemon.mount.mounts().map((l) => {
      const [device, dir, , opts] = l.split(' ');
      return { device, dir, port: Number(/(?:^|,)port=(\d+)/.exec(opts!)![1]) };
    });
    const mountedDirs = procMounts.map((m) => m.dir);
    expect(new Set(mountedDirs).size, 'no directory mounted twice').to.equal(mountedDirs.length);
    for (const m of procMounts) {
      const owner = tunnels.find((t) => t.port === m.port);
      expect(owner, `the mount at ${m.dir} has a tunnel`).to.not.equal(undefined);
      expect(owner!.mounts).to.include(m.dir);
    }
    const recorded = tunnels.flatMap((t) => t.mounts.map((dir) => ({ dir, port: t.port })));
    expect(recorded).to.have.deep.members(procMounts.map((m) => ({ dir: m.dir, port: m.port })));

    const onDisk = readdirSync(daemon.stateDir).filter((f) => f.endsWith('.json')).map((f) =>
      JSON.parse(readFileSync(join(daemon.stateDir, f), 'utf8')) as { fs_id: string; port: number; mounts: string[] });
    expect(onDisk.map((r) => ({ fs_id: r.fs_id, port: r.port, mounts: [...r.mounts].sort() }))).to.have.deep.members(
      tunnels.map((t) => ({ fs_id: t.fs_id, port: t.port, mounts: [...t.mounts].sort() })),
    );
  });
});
