// Instructions per small-RPC round trip of each tunnel's process, counted by
// valgrind's callgrind (`make bench BENCH_ARGS=--instructions`). A time on
// these shared machines moves with whatever else runs; an instruction count
// does not, so a change to the copy path can be judged by a few hundred
// instructions where its time would drown in noise, and the count per
// category shows where the relay's extra CPU per round trip goes (README,
// Performance). Fewer instructions need not mean less time (V8's code runs
// fewer instructions per cycle than stunnel's): the timed bench stays the
// judge of the targets.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Daemon, ROOT, removeTempDirs } from '../helpers/daemon.js';
import {
  BULK_FS, BULK_TARGET, REGION, STUNNEL_BULK_PORT, benchDir, makePki, relayConfig, startService, startStunnelClient, startTerminator,
  toolVersion, type Proc, type Wrapper,
} from './paths.js';
import { median } from './report.js';
import { RpcConnection } from './workloads.js';

/**
 * valgrind counts each byte of a `rep stosb` or `rep movsb` as one
 * instruction, and glibc's memset and memcpy use those from 2 KiB up:
 * stunnel's zeroed OpenSSL buffers alone would count about 67,000
 * instructions per 200-byte round trip. With these tunables glibc takes its
 * vector loops instead, which are counted like any other code.
 */
export const GLIBC_TUNABLES = 'glibc.cpu.x86_rep_stosb_threshold=2147483647:glibc.cpu.x86_rep_movsb_threshold=2147483647';

/** Warm-up round trips (V8 has optimised the relay's path by then), measured round trips per round, rounds. */
const SIZES = {
  // 5 rounds: V8's share moves with its garbage collections (one round in 3 once counted 15% more), and the median leaves that out.
  full: { warm: 10_000, trips: 3_000, rounds: 5 },
  smoke: { warm: 200, trips: 100, rounds: 1 },
} as const;

export const WORKLOADS = [['rpc200_instructions', 200], ['rpc8k_instructions', 8192]] as const;
type Tunnel = 'stunnel' | 'relay';
const TUNNELS: readonly Tunnel[] = ['stunnel', 'relay'];

export const CATEGORIES = ['OpenSSL', 'libc', 'libuv', 'Node (C++)', 'V8', 'JIT code', 'stunnel', 'other'] as const;
export type Category = (typeof CATEGORIES)[number];
export type Breakdown = Record<Category, number>;

/**
 * The category of one line of `callgrind_annotate` ("file:function [object]").
 * node links OpenSSL, libuv and V8 statically: its symbols that are neither
 * V8's, Node's nor libuv's are OpenSSL's, the only other C on this path.
 * V8's generated code has no symbols and no object ("???").
 */
export function categoryOf(fn: string): Category {
  const object = /\[([^\]]*)\]\s*$/.exec(fn)?.[1] ?? '';
  if (object === '???') return 'JIT code';
  if (/\/stunnel4?$/.test(object)) return 'stunnel';
  if (/libssl|libcrypto/.test(object)) return 'OpenSSL';
  if (/\/(libc|libm|libpthread|ld-linux[^/]*)\.so/.test(object)) return 'libc';
  if (/\/node$/.test(object)) {
    if (/deps\/uv\/|\buv_/.test(fn)) return 'libuv';
    if (/v8::|Builtins?_/.test(fn)) return 'V8';
    if (/node::|std::/.test(fn)) return 'Node (C++)';
    return 'OpenSSL';
  }
  return 'other';
}

/** Self cost by category from `callgrind_annotate --threshold=100` output (every function listed). */
export function byCategory(annotated: string): Breakdown {
  const out = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Breakdown;
  for (const m of annotated.matchAll(/^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.+)$/gm)) {
    const fn = m[2]!;
    if (fn.startsWith('PROGRAM TOTALS')) continue;
    out[categoryOf(fn)] += Number(m[1]!.replaceAll(',', ''));
  }
  return out;
}

const total = (b: Breakdown): number => CATEGORIES.reduce((s, c) => s + b[c], 0);

function callgrind(outDir: string): Wrapper {
  return {
    // Instrumented only while a measurement runs: start-up and warm-up run at valgrind's faster, uncounted pace.
    argv: ['valgrind', '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${join(outDir, 'callgrind.%p')}`],
    env: { GLIBC_TUNABLES },
  };
}

function control(pid: number, ...args: string[]): void {
  execFileSync('callgrind_control', [...args, String(pid)], { stdio: 'ignore', timeout: 120_000 });
}

/** Instructions by category that `pid` (under callgrind, dumping into `outDir`) ran while `work` ran. */
async function counted(pid: number, outDir: string, work: () => Promise<void>): Promise<Breakdown> {
  control(pid, '-i', 'on');
  control(pid, '-z');
  await work();
  control(pid, '-d');
  control(pid, '-i', 'off');
  const base = `callgrind.${pid}.`;
  const dumps = readdirSync(outDir).filter((f) => f.startsWith(base)).sort((a, b) => Number(a.slice(base.length)) - Number(b.slice(base.length)));
  const last = dumps.at(-1);
  if (!last) throw new Error(`callgrind wrote no dump for pid ${pid} in ${outDir}`);
  return byCategory(execFileSync('callgrind_annotate', ['--threshold=100', join(outDir, last)], { encoding: 'utf8', maxBuffer: 256 << 20 }));
}

function perTrip(b: Breakdown, trips: number): Breakdown {
  return Object.fromEntries(CATEGORIES.map((c) => [c, Math.round(b[c] / trips)])) as Breakdown;
}

interface InstructionRun {
  figure: string;
  path: Tunnel;
  round: number;
  value: number;
  categories: Breakdown;
}

/** The figures' table, then where the instructions of the median round go, by category. */
export function instructionsTable(runs: InstructionRun[]): string {
  const pad = (cells: string[], widths: number[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const out: string[] = [];
  const head = ['figure (instructions/RT, ↓)', 'stunnel', 'efs-relay', 'relay/stunnel', 'by round'];
  const rows = WORKLOADS.map(([figure]) => {
    const of = (p: Tunnel): InstructionRun[] => runs.filter((r) => r.figure === figure && r.path === p);
    const m = (p: Tunnel): number => median(of(p).map((r) => r.value));
    const ratios = of('relay').map((r) => r.value / (of('stunnel').find((s) => s.round === r.round)?.value ?? NaN));
    return [figure, m('stunnel').toFixed(0), m('relay').toFixed(0), (m('relay') / m('stunnel')).toFixed(2), `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  out.push(pad(head, widths), ...rows.map((r) => pad(r, widths)));
  for (const [figure] of WORKLOADS) {
    const medianRun = (p: Tunnel): InstructionRun => {
      const of = runs.filter((r) => r.figure === figure && r.path === p).sort((a, b) => a.value - b.value);
      return of[Math.floor((of.length - 1) / 2)]!;
    };
    const [s, r] = [medianRun('stunnel'), medianRun('relay')];
    const cats = CATEGORIES.filter((c) => s.categories[c] || r.categories[c]);
    const h = [`${figure}, by category`, 'stunnel', 'efs-relay'];
    const lines = cats.map((c) => [c, String(s.categories[c]), String(r.categories[c])]);
    const w = h.map((x, i) => Math.max(x.length, ...lines.map((l) => l[i]!.length)));
    out.push('', pad(h, w), ...lines.map((l) => pad(l, w)));
  }
  return out.join('\n');
}

/** Counts each tunnel's instructions per round trip of 200-byte and 8 KiB RPCs; writes build/bench/instructions.json. */
export async function runInstructions(mode: 'full' | 'smoke'): Promise<void> {
  const size = SIZES[mode];
  const started = Date.now();
  const say = (s: string): void => void process.stderr.write(`${s}\n`);
  const dir = benchDir();
  const outDir = join(dir, 'callgrind');
  mkdirSync(outDir);
  const pki = makePki(dir);
  const procs: Proc[] = [];
  let relay: Daemon | null = null;
  try {
    say(`efs-relay bench (instructions, ${mode}): starting the service, the TLS terminator, and a stunnel client and efs-relayd under callgrind`);
    procs.push(await startService());
    procs.push(await startTerminator(dir, pki, 1));
    const wrap = callgrind(outDir);
    const st = await startStunnelClient(dir, pki, 'stunnel-bulk', STUNNEL_BULK_PORT, BULK_TARGET, BULK_FS, wrap);
    procs.push(st);
    // The daemon with the bench's config (its defaults), its node started by valgrind itself: valgrind does not follow the launcher script's exec.
    const launcher = join(dir, 'efs-relayd-callgrind');
    writeFileSync(launcher, `#!/bin/sh\nexec ${wrap.argv.map((a) => `'${a}'`).join(' ')} '${process.execPath}' '${join(ROOT, 'build/lib/efs-relayd.mjs')}' "$@"\n`);
    chmodSync(launcher, 0o755);
    relay = await new Daemon(relayConfig(pki, { port_range: { first: 22000, last: 22010 } })).start(launcher, undefined, wrap.env, 180_000);
    const relayPort = (await relay.efsctlJson<{ tunnel: { port: number } }>('add', BULK_FS, '-o', `mounttargetip=${BULK_TARGET},region=${REGION}`)).tunnel.port;
    const port: Record<Tunnel, number> = { stunnel: STUNNEL_BULK_PORT, relay: relayPort };
    const pid: Record<Tunnel, number> = { stunnel: st.pid, relay: relay.pid };

    const runs: InstructionRun[] = [];
    for (const [figure, bytes] of WORKLOADS) {
      const conns = new Map<Tunnel, RpcConnection>();
      try {
        for (const p of TUNNELS) {
          say(`${figure}: ${p}, ${size.warm} round trips to warm up`);
          const c = await RpcConnection.open(port[p], bytes, size.warm + size.rounds * size.trips, null);
          conns.set(p, c);
          await c.turn(size.warm);
        }
        for (let round = 1; round <= size.rounds; round++) {
          for (const p of round % 2 ? TUNNELS : [...TUNNELS].reverse()) {
            const b = await counted(pid[p], outDir, () => conns.get(p)!.turn(size.trips));
            const categories = perTrip(b, size.trips);
            runs.push({ figure, path: p, round, value: total(b) / size.trips, categories });
            say(`${figure} round ${round}/${size.rounds}: ${p} ${Math.round(total(b) / size.trips)} instructions per round trip`);
          }
        }
      } finally {
        for (const c of conns.values()) c.close();
      }
    }

    const medians = Object.fromEntries(WORKLOADS.map(([figure]) => [figure,
      Object.fromEntries(TUNNELS.map((p) => [p, median(runs.filter((r) => r.figure === figure && r.path === p).map((r) => r.value))]))]));
    const result = {
      date: new Date().toISOString(),
      mode: `instructions-${mode}`,
      sizes: size,
      machine: {
        cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, node_openssl: process.versions.openssl,
        stunnel: toolVersion('stunnel', ['-version'], 'stunnel '), stunnel_openssl: toolVersion('openssl', ['version'], 'OpenSSL'),
        valgrind: toolVersion('valgrind', ['--version'], 'valgrind'),
      },
      glibc_tunables: GLIBC_TUNABLES,
      seconds: (Date.now() - started) / 1000,
      medians,
      runs,
    };
    mkdirSync(join(ROOT, 'build/bench'), { recursive: true });
    writeFileSync(join(ROOT, 'build/bench/instructions.json'), JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`${instructionsTable(runs)}\n\nInstructions per round trip of each tunnel's process (all its threads), counted by callgrind over ${size.trips} round trips a round after ${size.warm} to warm up; ${size.rounds} round(s), medians; ${result.machine.valgrind}.\nRaw runs: build/bench/instructions.json (${result.seconds.toFixed(0)} s)\n`);
  } finally {
    await relay?.stop();
    for (const p of procs.reverse()) await p.stop();
    removeTempDirs();
  }
}
