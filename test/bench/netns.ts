// make bench BENCH_ARGS=--netns: what a netns= tunnel costs against a tunnel
// of the daemon's own namespace. One daemon, two tunnels to the same TLS
// terminator: one as usual, one with netns=/proc/DAEMON_PID/ns/net, the
// daemon's own namespace entered through the helper, so that only the
// helper's way differs (sockets handed over, the TLS side copied with 'data'
// events). The two alternate turn by turn, as the main bench's paths do.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { ROOT, removeTempDirs, sleep } from '../helpers/daemon.js';
import { BULK_TARGET, REGION, SERVICE_PORT, benchDir, makePki, relayNode, startRelay, startService, startTerminator, type Proc } from './paths.js';
import { median } from './report.js';
import { BulkConnection, connectSetup } from './workloads.js';

type Mode = 'full' | 'quick' | 'smoke';
type Way = 'own' | 'netns';
const SIZES = {
  full: { bulk: 512 << 20, turns: 8, connects: 300, rounds: 3 },
  quick: { bulk: 128 << 20, turns: 4, connects: 100, rounds: 3 },
  smoke: { bulk: 2 << 20, turns: 2, connects: 5, rounds: 1 },
} as const;
const FIGURES = ['upload_mb_s', 'download_mb_s', 'upload_cpu_s_per_gib', 'download_cpu_s_per_gib', 'connect_ms'] as const;
type Figure = (typeof FIGURES)[number];

/** Which way goes first in a round or turn: each goes first as often as the other. */
const order = (n: number): Way[] => (n % 2 ? ['netns', 'own'] : ['own', 'netns']);

export async function runNetns(mode: Mode): Promise<void> {
  const size = SIZES[mode];
  const dir = benchDir();
  const pki = makePki(dir);
  const procs: Proc[] = [];
  const say = (s: string): void => void process.stderr.write(`${s}\n`);
  const runs: Array<{ figure: Figure; way: Way; round: number; value: number }> = [];
  const relay = await startRelay(pki);
  try {
    procs.push(await startService());
    // Its NFS service is not used here: the bulk service stands in for it.
    procs.push(await startTerminator(dir, pki, SERVICE_PORT));
    const add = async (fsId: string, extra: string): Promise<number> =>
      (await relay.efsctlJson<{ tunnel: { port: number } }>('add', fsId, '-o', `mounttargetip=${BULK_TARGET},region=${REGION}${extra}`)).tunnel.port;
    const port: Record<Way, number> = { own: await add('fs-0e0e0a01', ''), netns: await add('fs-0e0e0a02', `,netns=/proc/${relay.pid}/ns/net`) };
    for (let round = 1; round <= size.rounds; round++) {
      say(`round ${round}/${size.rounds}: ${order(round).join(', ')}`);
      for (const direction of ['up', 'down'] as const) {
        const conns = new Map<Way, BulkConnection>();
        for (const w of order(round)) conns.set(w, await BulkConnection.open(port[w], direction, size.bulk, size.bulk / size.turns, relay.pid));
        for (let t = 0; t < size.turns; t++) {
          for (const w of order(round + t)) {
            await sleep(50);
            await conns.get(w)!.turn();
          }
        }
        for (const [w, c] of conns) {
          c.close();
          const r = c.result();
          runs.push({ figure: `${direction}load_mb_s`, way: w, round, value: r.mbPerSec });
          runs.push({ figure: `${direction}load_cpu_s_per_gib`, way: w, round, value: r.cpuPerGiB ?? 0 });
        }
      }
      for (const w of order(round)) runs.push({ figure: 'connect_ms', way: w, round, value: await connectSetup(port[w], size.connects) });
    }
  } finally {
    await relay.stop();
    for (const p of procs) await p.stop();
    removeTempDirs();
  }

  const of = (figure: Figure, way: Way): number[] => runs.filter((r) => r.figure === figure && r.way === way).map((r) => r.value);
  const lines = [`${'figure'.padEnd(24)}  ${'own'.padStart(8)}  ${'netns'.padStart(8)}  ${'netns/own'.padStart(9)}  by round`];
  const ratios: Record<string, number> = {};
  for (const f of FIGURES) {
    const [own, ns] = [median(of(f, 'own')), median(of(f, 'netns'))];
    // A CPU figure of 0 (tiny --smoke transfers, under a clock tick) has no ratio.
    const rounds = of(f, 'netns').map((v, i) => v / (of(f, 'own')[i] as number)).filter(Number.isFinite);
    const ratio = own > 0 ? ns / own : null;
    if (ratio !== null) ratios[f] = ratio;
    const range = rounds.length ? `${Math.min(...rounds).toFixed(2)}–${Math.max(...rounds).toFixed(2)}` : '-';
    lines.push(`${f.padEnd(24)}  ${own.toFixed(2).padStart(8)}  ${ns.toFixed(2).padStart(8)}  ${(ratio === null ? '-' : ratio.toFixed(2)).padStart(9)}  ${range}`);
  }
  mkdirSync(join(ROOT, 'build/bench'), { recursive: true });
  const runtime = await relayNode();
  const result = {
    mode: `netns-${mode}`, date: new Date().toISOString(), runs, ratios,
    machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, openssl: process.versions.openssl, relay_node: runtime.version, relay_node_openssl: runtime.openssl },
  };
  writeFileSync(join(ROOT, 'build/bench/netns.json'), JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`${lines.join('\n')}\n\n${size.rounds} round(s), medians; CPU is the daemon's; ${result.machine.cores} cores, ${result.machine.cpu}, efs-relayd on Node ${runtime.version} (OpenSSL ${runtime.openssl}).\nRaw runs: build/bench/netns.json\n`);
}
