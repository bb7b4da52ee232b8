// make bench: efs-relay against stunnel (as efs-utils runs it) and a plain
// TCP path, side by side in one invocation, alternating paths in every
// round (the order rotates from round to round), reporting medians and
// ratios. --quick runs a smaller set; --smoke runs tiny sizes once, only to
// prove that every figure is produced. --instructions counts both tunnels'
// instructions per RPC round trip and per MiB of bulk and NFS instead
// (instructions.ts); --netns measures a netns= tunnel against one of the
// daemon's own namespace (netns.ts). The daemon runs on the node the packaged
// binary carries; --relay-node=PATH runs it on another (paths.ts).
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Daemon, ROOT, removeTempDirs, sleep, writeRecords } from '../helpers/daemon.js';
import { Ganesha } from '../helpers/nfs.js';
import {
  BULK_FS, BULK_TARGET, NFS_FS, NFS_TARGET, REGION, RELAY_METRICS_PORT, SERVICE_PORT, STUNNEL_BULK_PORT, STUNNEL_NFS_PORT,
  benchDir, benchGanesha, makePki, pathOrder, relayBin, relayConfig, relayNode, startRelay, startService, startStunnelClient, startTerminator, toolVersion, type Path, type Proc,
} from './paths.js';
import { runInstructions } from './instructions.js';
import { runNetns } from './netns.js';
import { FIGURES, median, roundRatios, table, targetResults, type Medians, type Run } from './report.js';
import { BulkConnection, connectSetup, holdConnections, NfsFiles, RpcConnection, rssBytes, switchesBetween, threadSwitches, type Throughput } from './workloads.js';
import { listeningPorts } from '../../cli/listeners.js';

type Mode = 'full' | 'quick' | 'smoke';
const SIZES = {
  full: { bulk: 1 << 30, bulkTurns: 8, rpcs: 50_000, rpcTurns: 10, turnSettleMs: 50, nfs: 256 << 20, nfsTurns: 4, connects: 500, settleMs: 300, quietMs: 5000, idle: 1000, idleRunMs: 45_000, connTunnels: 100, connsPer: 20, rounds: 3 },
  quick: { bulk: 128 << 20, bulkTurns: 4, rpcs: 5_000, rpcTurns: 5, turnSettleMs: 50, nfs: 32 << 20, nfsTurns: 2, connects: 100, settleMs: 200, quietMs: 2000, idle: 300, idleRunMs: 3_000, connTunnels: 25, connsPer: 20, rounds: 3 },
  smoke: { bulk: 4 << 20, bulkTurns: 2, rpcs: 200, rpcTurns: 2, turnSettleMs: 10, nfs: 1 << 20, nfsTurns: 1, connects: 10, settleMs: 20, quietMs: 500, idle: 10, idleRunMs: 500, connTunnels: 4, connsPer: 5, rounds: 1 },
} as const;

/**
 * Before each measured run: collect this client's garbage (with --expose-gc)
 * and let the previous run's connections finish closing, so that no path
 * pays for the one measured before it.
 */
async function settle(ms: number): Promise<void> {
  (globalThis as { gc?: () => void }).gc?.();
  await sleep(ms);
}

/**
 * Each path's workload on a connection of its own, run in `turns` turns with
 * the paths taking turns (the order rotated every turn), so that a noisy
 * moment of the machine falls on every path alike. Measured as one block per
 * path, a p99 (a few hundred round trips) or a throughput depended on what
 * the machine did during that block (README, Performance). Returns the
 * connections, closed, for their results.
 */
async function inTurns<C extends { close(): void }>(
  round: number, turns: number, settleMs: number, open: (p: Path) => Promise<C>, turn: (c: C) => Promise<void>,
): Promise<Map<Path, C>> {
  const conns = new Map<Path, C>();
  try {
    for (const p of pathOrder(round)) conns.set(p, await open(p));
    for (let t = 0; t < turns; t++) {
      for (const p of pathOrder(round + t)) {
        await settle(settleMs);
        await turn(conns.get(p)!);
      }
    }
  } finally {
    for (const c of conns.values()) c.close();
  }
  return conns;
}

/** Ports of the range in LISTEN state, read from /proc/net/tcp (no connection is made). */
function listening(first: number, last: number): number {
  return listeningPorts(readFileSync('/proc/net/tcp', 'utf8')).filter((port) => port >= first && port <= last).length;
}

async function main(): Promise<void> {
  const mode: Mode = process.argv.includes('--smoke') ? 'smoke' : process.argv.includes('--quick') ? 'quick' : 'full';
  if (process.argv.includes('--instructions')) {
    if (mode === 'quick') throw new Error('--instructions has no --quick set: its full run takes about 9 minutes (--smoke only proves it works)');
    return runInstructions(mode);
  }
  if (process.argv.includes('--netns')) return runNetns(mode);
  const size = SIZES[mode];
  const started = Date.now();
  const dir = benchDir();
  const pki = makePki(dir);
  const runs: Run[] = [];
  const record = (figure: string, path: Path, round: number, value: number): void => {
    runs.push({ figure, path, round, value });
  };
  /** Each path's MB/s, and its tunnel's CPU per GiB where it has a tunnel. */
  const recordThroughput = (conns: Map<Path, { result(): Throughput }>, round: number, mbFigure: string, cpuFigure: string): void => {
    for (const [p, c] of conns) {
      const t = c.result();
      record(mbFigure, p, round, t.mbPerSec);
      if (t.cpuPerGiB !== null) record(cpuFigure, p, round, t.cpuPerGiB);
    }
  };
  const say = (s: string): void => void process.stderr.write(`${s}\n`);
  const procs: Proc[] = [];
  let relay: Daemon | null = null;
  try {
    say(`efs-relay bench (${mode}): starting the service, ganesha, the TLS terminator, stunnel clients and efs-relayd`);
    const ganesha = await benchGanesha();
    procs.push(await startService());
    procs.push(await startTerminator(dir, pki, ganesha.nfsPort));
    const stBulk = await startStunnelClient(dir, pki, 'stunnel-bulk', STUNNEL_BULK_PORT, BULK_TARGET, BULK_FS);
    const stNfs = await startStunnelClient(dir, pki, 'stunnel-nfs', STUNNEL_NFS_PORT, NFS_TARGET, NFS_FS);
    procs.push(stBulk, stNfs);
    // With its metrics endpoint on, as by default: its event-loop sampler counts in the idle wakeups.
    relay = await startRelay(pki, { metrics: { listen: `127.0.0.1:${RELAY_METRICS_PORT}` } });
    const bulkPort = (await relay.efsctlJson<{ tunnel: { port: number } }>('add', BULK_FS, '-o', `mounttargetip=${BULK_TARGET},region=${REGION}`)).tunnel.port;
    const nfsPort = (await relay.efsctlJson<{ tunnel: { port: number } }>('add', NFS_FS, '-o', `mounttargetip=${NFS_TARGET},region=${REGION}`)).tunnel.port;
    const port: Record<Path, number> = { plain: SERVICE_PORT, stunnel: STUNNEL_BULK_PORT, relay: bulkPort };
    const nfsPortOf: Record<Path, number> = { plain: ganesha.nfsPort, stunnel: STUNNEL_NFS_PORT, relay: nfsPort };
    const pidOf: Record<Path, number | null> = { plain: null, stunnel: stBulk.pid, relay: relay.pid };
    const nfsPidOf: Record<Path, number | null> = { plain: null, stunnel: stNfs.pid, relay: relay.pid };

    // Each NFS turn moves one file of this size; a path's turns add up to size.nfs.
    const nfsFile = randomBytes(size.nfs / size.nfsTurns);
    const nfsSrc = { path: join(dir, 'nfs-src.bin'), bytes: nfsFile.length, sha256: createHash('sha256').update(nfsFile).digest('hex') };
    writeFileSync(nfsSrc.path, nfsFile);

    for (let round = 1; round <= size.rounds; round++) {
      const order = pathOrder(round);
      say(`round ${round}/${size.rounds}: ${order.join(', ')}`);
      // Bulk: each path's 1 GiB in `bulkTurns` slices, the paths taking turns.
      for (const [direction, mbFigure, cpuFigure] of [['up', 'upload_mb_s', 'upload_cpu_s_per_gib'], ['down', 'download_mb_s', 'download_cpu_s_per_gib']] as const) {
        const conns = await inTurns(round, size.bulkTurns, size.turnSettleMs,
          (p) => BulkConnection.open(port[p], direction, size.bulk, size.bulk / size.bulkTurns, pidOf[p]), (c) => c.turn());
        recordThroughput(conns, round, mbFigure, cpuFigure);
      }
      // Small RPCs: each path's round trips in `rpcTurns` turns, the paths taking turns.
      for (const [name, bytes] of [['rpc200', 200], ['rpc8k', 8192]] as const) {
        const conns = await inTurns(round, size.rpcTurns, size.turnSettleMs,
          (p) => RpcConnection.open(port[p], bytes, size.rpcs, pidOf[p]), (c) => c.turn(Math.ceil(size.rpcs / size.rpcTurns)));
        for (const [p, c] of conns) {
          const l = c.result();
          record(`${name}_p50_us`, p, round, l.p50us);
          record(`${name}_p99_us`, p, round, l.p99us);
          if (l.cpuUsPerRoundTrip !== null) record(`${name}_cpu_us`, p, round, l.cpuUsPerRoundTrip);
        }
      }
      // NFS: each path's files written, then read back, one file per turn, the paths taking turns.
      for (const [direction, url] of [
        ['write', (name: string, port: number) => ganesha.v3Url(name, port)],
        ['read', (name: string, port: number) => ganesha.v4Url(name, port)],
      ] as const) {
        const conns = await inTurns(round, size.nfsTurns, size.settleMs,
          async (p) => new NfsFiles(direction, (i) => url(`bench-${p}-${round}-${i}.bin`, nfsPortOf[p]), nfsSrc, size.nfsTurns, nfsPidOf[p]),
          (c) => c.turn());
        recordThroughput(conns, round, `nfs_${direction}_mb_s`, `nfs_${direction}_cpu_s_per_gib`);
      }
      for (const p of order) {
        await settle(size.settleMs);
        record('connect_ms', p, round, await connectSetup(port[p], size.connects));
      }

      // Idle cost: how often the tunnels' threads wake with no traffic (both stunnel clients, as efs-utils runs one per mount).
      const relayPid = relay.pid;
      const switches = { stunnel: () => threadSwitches(stBulk.pid, stNfs.pid), relay: () => threadSwitches(relayPid) };
      await settle(size.settleMs); // the last workload's connections finish closing first
      const w0 = { stunnel: switches.stunnel(), relay: switches.relay() };
      await sleep(size.quietMs);
      for (const p of ['stunnel', 'relay'] as const) {
        record('idle_wakeups_per_s', p, round, switchesBetween(w0[p], switches[p]()) / (size.quietMs / 1000));
      }

      // Scale: a fresh daemon restoring `idle` records (start-up until every port listens, then RSS) ...
      // efs-utils would run one stunnel per mount: its figure is one idle stunnel client's RSS times the count.
      record('idle_tunnels_rss_mib', 'stunnel', round, (rssBytes(stBulk.pid) * size.idle) / 2 ** 20);
      const idleDir = benchDir();
      writeRecords(join(idleDir, 'state'), size.idle, 24000, BULK_TARGET);
      const idle = new Daemon(relayConfig(pki, { state_dir: join(idleDir, 'state'), port_range: { first: 24000, last: 24000 + size.idle - 1 } }), idleDir);
      const t0 = performance.now();
      await idle.start(await relayBin());
      while (listening(24000, 24000 + size.idle - 1) < size.idle) await sleep(10);
      record('startup_s', 'relay', round, (performance.now() - t0) / 1000);
      // RSS while the daemon runs as it does idle: 1000 tunnels' first probes spread over 10 s and the
      // next come 27-33 s later, so by 45 s every tunnel has been probed twice. Read 0.5 s after
      // start-up, the figure once missed the 15-20 MiB that probing added; read once at 45 s, it fell
      // anywhere on the sawtooth that probing and V8's major GCs draw (73-113 MiB in one run): so the
      // peak of readings every 0.5 s (README, Performance).
      const idleEnd = performance.now() + size.idleRunMs;
      let peak = rssBytes(idle.pid);
      while (performance.now() < idleEnd) {
        await sleep(500);
        peak = Math.max(peak, rssBytes(idle.pid));
      }
      record('idle_tunnels_rss_mib', 'relay', round, peak / 2 ** 20);
      await idle.stop();
      // ... and `connTunnels` tunnels holding `connsPer` open TLS connections each.
      const connDir = benchDir();
      writeRecords(join(connDir, 'state'), size.connTunnels, 26000, BULK_TARGET);
      const busy = new Daemon(relayConfig(pki, { state_dir: join(connDir, 'state'), port_range: { first: 26000, last: 26000 + size.connTunnels - 1 } }), connDir);
      await busy.start(await relayBin());
      const socks = await holdConnections(Array.from({ length: size.connTunnels }, (_, i) => 26000 + i), size.connsPer);
      record('open_conns_rss_mib', 'relay', round, rssBytes(busy.pid) / 2 ** 20);
      record('open_conns_fds', 'relay', round, readdirSync(`/proc/${busy.pid}/fd`).length);
      for (const s of socks) s.destroy();
      await busy.stop();
    }

    const medians: Medians = {};
    for (const [figure, spec] of Object.entries(FIGURES)) {
      medians[figure] = {};
      for (const p of spec.paths) {
        const xs = runs.filter((r) => r.figure === figure && r.path === p).map((r) => r.value);
        if (xs.length) medians[figure]![p] = median(xs);
      }
    }
    const byRound: Record<string, number[]> = {};
    for (const figure of Object.keys(FIGURES)) {
      const r = roundRatios(runs, figure);
      if (r.length) byRound[figure] = r;
    }
    const stunnelVersion = toolVersion('stunnel', ['-version'], 'stunnel ');
    const systemOpenssl = toolVersion('openssl', ['version'], 'OpenSSL');
    const relayRuntime = await relayNode();
    const result = {
      date: new Date().toISOString(),
      mode,
      sizes: size,
      machine: {
        cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, node_openssl: process.versions.openssl,
        relay_node: relayRuntime.version, relay_node_openssl: relayRuntime.openssl, stunnel: stunnelVersion, stunnel_openssl: systemOpenssl,
      },
      seconds: (Date.now() - started) / 1000,
      medians,
      relay_stunnel_by_round: byRound,
      targets: targetResults(medians),
      path_order_by_round: Array.from({ length: size.rounds }, (_, i) => pathOrder(i + 1)),
      runs,
    };
    mkdirSync(join(ROOT, 'build/bench'), { recursive: true });
    writeFileSync(join(ROOT, 'build/bench/results.json'), JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(table(medians, byRound) + `\n\n${size.rounds} round(s), medians; ${result.machine.cores} cores, ${result.machine.cpu}, efs-relayd on Node ${relayRuntime.version} (OpenSSL ${relayRuntime.openssl}), the bench's clients on Node ${process.version}, ${stunnelVersion} (${systemOpenssl}).\nRaw runs: build/bench/results.json (${result.seconds.toFixed(0)} s)\n`);
  } finally {
    await relay?.stop();
    for (const p of procs.reverse()) await p.stop();
    await Ganesha.stopShared();
    removeTempDirs();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
