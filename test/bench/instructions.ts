// Instructions per small-RPC round trip and per MiB of bulk transfer and of
// NFS write and read (nfs-cp and nfs-cat through ganesha) of each tunnel's
// process, counted by valgrind's callgrind (`make bench
// BENCH_ARGS=--instructions`), with the L1 cache misses and mispredicted
// branches of its simulated CPU. A time on
// these shared machines moves with whatever else runs; these counts do not,
// so a change to the copy path can be judged by a few hundred instructions
// where its time would drown in noise, and the counts by category show where
// the relay's extra CPU per round trip goes (README, Performance). They are
// not times: the timed bench stays the judge of the targets.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Daemon, ROOT, removeTempDirs } from '../helpers/daemon.js';
import { Ganesha, nfsCatSha256, nfsCp } from '../helpers/nfs.js';
import {
  BULK_FS, BULK_TARGET, NFS_FS, NFS_TARGET, REGION, STUNNEL_BULK_PORT, STUNNEL_NFS_PORT, benchDir, benchGanesha, makePki, relayConfig, relayNode,
  startService, startStunnelClient, startTerminator, toolVersion, type Proc, type Wrapper,
} from './paths.js';
import { median } from './report.js';
import { BulkConnection, RpcConnection } from './workloads.js';

/**
 * valgrind counts each byte of a `rep stosb` or `rep movsb` as one
 * instruction, and glibc's memset and memcpy use those from 2 KiB up:
 * stunnel's zeroed OpenSSL buffers alone would count about 67,000
 * instructions per 200-byte round trip. With these tunables glibc takes its
 * vector loops instead, which are counted like any other code.
 */
export const GLIBC_TUNABLES = 'glibc.cpu.x86_rep_stosb_threshold=2147483647:glibc.cpu.x86_rep_movsb_threshold=2147483647';

/**
 * Per workload kind: units to warm up with (V8 has optimised the relay's path by then) and units counted per round
 * (round trips, or MiB); rounds. NFS moves files of `file` MiB, one nfs-cp or nfs-cat process (and so one
 * connection, with its TLS handshake) each.
 */
const SIZES = {
  // 5 rounds, medians: a round that a full garbage collection of V8's lands in counts more (little for RPCs, up to
  // half as much again for bulk).
  full: { rpc: { warm: 10_000, counted: 3_000 }, bulk: { warm: 96, counted: 24 }, nfs: { warm: 32, counted: 16, file: 16 }, rounds: 5 },
  // Only that every figure comes out: a quarter MiB is counted per MiB like any other amount. (Under callgrind,
  // the daemon's MiB of NFS with its connection's handshake took about ten seconds.)
  smoke: { rpc: { warm: 100, counted: 40 }, bulk: { warm: 0.25, counted: 0.25 }, nfs: { warm: 0.25, counted: 0.25, file: 0.25 }, rounds: 1 },
} as const;

type Sizes = (typeof SIZES)[keyof typeof SIZES];

/** A connection of a workload: `run(n)` moves n units (round trips or MiB). */
interface WorkloadConnection {
  run(units: number): Promise<void>;
  close(): void;
}

/** Where a workload's files go: the NFS server, and a directory for the file each write sends. */
interface NfsSide {
  ganesha: Ganesha;
  dir: string;
}

interface Workload {
  name: string;
  unit: 'round trip' | 'MiB';
  kind: 'rpc' | 'bulk' | 'nfs';
  /** `port`: the tunnel's local port for this kind (the NFS tunnels' for 'nfs'). */
  open(port: number, size: Sizes, nfs: NfsSide, tunnel: Tunnel): Promise<WorkloadConnection>;
}

const MiB = 1 << 20;

function rpc(name: string, bytes: number): Workload {
  return {
    name, unit: 'round trip', kind: 'rpc',
    async open(port, size) {
      const c = await RpcConnection.open(port, bytes, size.rpc.warm + size.rounds * size.rpc.counted, null);
      return { run: (n) => c.turn(n), close: () => c.close() };
    },
  };
}

function bulk(name: string, direction: 'up' | 'down'): Workload {
  return {
    name, unit: 'MiB', kind: 'bulk',
    async open(port, size) {
      // One slice per counted round; the warm-up moves whole slices too.
      const slice = size.bulk.counted * MiB;
      const c = await BulkConnection.open(port, direction, size.bulk.warm * MiB + size.rounds * slice, slice, null);
      return {
        run: async (n) => {
          for (let moved = 0; moved < n; moved += size.bulk.counted) await c.turn();
        },
        close: () => c.close(),
      };
    },
  };
}

/** NFS write (nfs-cp, NFSv3 WRITEs of 1 MiB, one at a time) or read (nfs-cat, NFSv4 READs) of whole files through the tunnel. */
function nfs(name: string, direction: 'write' | 'read'): Workload {
  return {
    name, unit: 'MiB', kind: 'nfs',
    async open(port, size, { ganesha, dir }, tunnel) {
      const content = randomBytes(size.nfs.file * MiB);
      const sha256 = createHash('sha256').update(content).digest('hex');
      const src = join(dir, `${name}-${tunnel}.bin`);
      writeFileSync(src, content);
      // A read's file is put in the export directly (ganesha serves a local directory); writes land beside it.
      const readName = `instructions-${name}-${tunnel}.bin`;
      if (direction === 'read') writeFileSync(join(ganesha.exportPath, readName), content);
      const written: string[] = [];
      const moveFile = async (): Promise<void> => {
        if (direction === 'write') {
          const file = `instructions-${name}-${tunnel}-${written.length}.bin`;
          written.push(file);
          await nfsCp(src, ganesha.v3Url(file, port));
          return;
        }
        const read = await nfsCatSha256(ganesha.v4Url(readName, port));
        if (read.bytes !== content.length || read.sha256 !== sha256) throw new Error(`nfs-cat through port ${port} read ${read.bytes} bytes, not the file written`);
      };
      return {
        run: async (n) => {
          for (let moved = 0; moved < n; moved += size.nfs.file) await moveFile();
        },
        close: () => {
          for (const f of [...written, readName]) rmSync(join(ganesha.exportPath, f), { force: true });
        },
      };
    },
  };
}

export const WORKLOADS: readonly Workload[] = [
  rpc('rpc200', 200), rpc('rpc8k', 8192), bulk('upload', 'up'), bulk('download', 'down'), nfs('nfs_write', 'write'), nfs('nfs_read', 'read'),
];

/**
 * What is counted per unit: callgrind's events (instructions, L1 instruction-cache misses, L1 data-cache read
 * and write misses, mispredicted conditional and indirect branches) and the figure's suffix.
 */
export const EVENTS = [
  ['Ir', 'instructions'],
  ['I1mr', 'l1i_misses'],
  ['D1mr+D1mw', 'l1d_misses'],
  ['Bcm+Bim', 'branch_misses'],
] as const;
type Measure = (typeof EVENTS)[number][1];
type Tunnel = 'stunnel' | 'relay';
const TUNNELS: readonly Tunnel[] = ['stunnel', 'relay'];

export const CATEGORIES = ['OpenSSL', 'libc', 'libuv', 'Node (C++)', 'V8', 'JIT code', 'stunnel', 'other'] as const;
export type Category = (typeof CATEGORIES)[number];
export type Breakdown = Record<Category, number>;

/**
 * The category of a function, named "file:function [object]" (as selfCosts, and callgrind_annotate, name it).
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
    // heap::base and cppgc: V8's heap, outside its v8:: namespace.
    if (/v8::|Builtins?_|heap::base::|cppgc::/.test(fn)) return 'V8';
    if (/node::|std::/.test(fn)) return 'Node (C++)';
    return 'OpenSSL';
  }
  return 'other';
}

/**
 * Each function's self cost of every event in a callgrind dump, by "file:function [object]", read from the dump
 * itself (valgrind.org/docs/manual/cl-format.html): its cost lines, less each call's inclusive cost (the line after
 * `calls=`). callgrind_annotate 3.19 was seen listing up to a third more than the dump's rows hold, under load.
 */
export function selfCosts(dump: string): { events: string[]; byFunction: Map<string, number[]> } {
  const events = /^events:\s*(.+)$/m.exec(dump)?.[1]?.trim().split(/\s+/) ?? [];
  const positions = /^positions:\s*(.+)$/m.exec(dump)?.[1]?.trim().split(/\s+/).length ?? 1;
  // Compressed names, "(id) name" once and "(id)" after, in three spaces: objects, files and functions.
  const names = { ob: new Map<string, string>(), fl: new Map<string, string>(), fn: new Map<string, string>() };
  const spaceOf = (key: string): keyof typeof names => (key.endsWith('ob') ? 'ob' : key.endsWith('fn') ? 'fn' : 'fl');
  const current = { ob: '???', fl: '???', fn: '???' };
  const byFunction = new Map<string, number[]>();
  let callCost = false;
  for (const line of dump.split('\n')) {
    const spec = /^(ob|fl|fi|fe|fn|cob|cfi|cfl|cfn)=(.*)$/.exec(line);
    if (spec) {
      const [, key, value] = spec as unknown as [string, string, string];
      const space = names[spaceOf(key)];
      const compressed = /^\((\d+)\)(?: (.*))?$/.exec(value);
      let name = value;
      if (compressed) {
        if (compressed[2] !== undefined) space.set(compressed[1]!, compressed[2]);
        name = space.get(compressed[1]!) ?? value;
      }
      // fi=/fe= (inlined code) and the called ones (c*) leave the function a cost line belongs to unchanged.
      if (key === 'ob' || key === 'fl' || key === 'fn') current[key] = name;
      continue;
    }
    if (line.startsWith('calls=')) {
      callCost = true;
      continue;
    }
    if (!/^[\d+\-*]/.test(line)) continue;
    if (callCost) {
      callCost = false;
      continue;
    }
    const costs = line.trim().split(/\s+/).slice(positions).map(Number);
    const fn = `${current.fl}:${current.fn} [${current.ob}]`;
    const sum = byFunction.get(fn) ?? new Array<number>(events.length).fill(0);
    costs.forEach((c, i) => (sum[i] = (sum[i] ?? 0) + c));
    byFunction.set(fn, sum);
  }
  return { events, byFunction };
}

/** One event's self cost, by category, of the functions of selfCosts. */
export function byCategory(costs: ReturnType<typeof selfCosts>, event: string): Breakdown {
  const out = Object.fromEntries(CATEGORIES.map((c) => [c, 0])) as Breakdown;
  const i = costs.events.indexOf(event);
  for (const [fn, sum] of costs.byFunction) out[categoryOf(fn)] += sum[i] ?? 0;
  return out;
}

function callgrind(outDir: string): Wrapper {
  return {
    // Instrumented only while a measurement runs: start-up and warm-up run at valgrind's faster, uncounted pace.
    // The caches simulated are this machine's as valgrind reads them (its L1 sizes; see the dump's "desc:" lines).
    argv: ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--cache-sim=yes', '--branch-sim=yes', `--callgrind-out-file=${join(outDir, 'callgrind.%p')}`],
    env: { GLIBC_TUNABLES },
  };
}

/**
 * callgrind's monitor commands to `pid`, in order, in one vgdb call: callgrind_control sends one command a call
 * (a perl start and two vgdb calls each), which was about a second of every counted round.
 */
function control(pid: number, ...commands: string[]): void {
  // An idle process sits in a system call: vgdb wakes it after --max-invoke-ms (100 by default).
  execFileSync('vgdb', [`--pid=${pid}`, '--max-invoke-ms=10', ...commands.flatMap((c) => ['-c', c])], { stdio: 'ignore', timeout: 120_000 });
}

function eventLine(dump: string, key: 'summary' | 'totals'): Record<string, number> | null {
  const names = /^events:\s*(.+)$/m.exec(dump)?.[1]?.trim().split(/\s+/) ?? [];
  const counts = new RegExp(`^${key}:\\s*(.+)$`, 'm').exec(dump)?.[1]?.trim().split(/\s+/).map(Number);
  return counts ? Object.fromEntries(names.map((n, i) => [n, counts[i] ?? 0])) : null;
}

/**
 * The totals of a callgrind dump's events ("events:" names them) as its cost rows add up ("totals:"), which is what
 * its breakdown by function (selfCosts) adds up to; "summary:" where there is no "totals:". callgrind computes
 * "summary:" apart, from each thread's running count: a few dozen instructions off "totals:" per dump.
 */
export function eventTotals(dump: string): Record<string, number> {
  return eventLine(dump, 'totals') ?? eventLine(dump, 'summary') ?? {};
}

/** How far callgrind's "summary:" instructions are from its rows' "totals:" (a fraction of the latter; 0 without both). */
export function summaryGap(dump: string): number {
  const [summary, totals] = [eventLine(dump, 'summary')?.Ir, eventLine(dump, 'totals')?.Ir];
  return summary === undefined || !totals ? 0 : (summary - totals) / totals;
}

/** One event or a sum of them ("D1mr+D1mw"). */
function eventSum(totals: Record<string, number>, spec: string): number {
  return spec.split('+').reduce((a, n) => a + (totals[n] ?? 0), 0);
}

interface Counted {
  totals: Record<Measure, number>;
  /** callgrind's "summary:" against the rows' totals (summaryGap). */
  summaryGap: number;
  /** Instructions and L1 instruction-cache misses by category. */
  instructions: Breakdown;
  l1iMisses: Breakdown;
}

/** What `pid` (under callgrind, dumping into `outDir`) ran while `work` ran. */
async function counted(pid: number, outDir: string, work: () => Promise<void>): Promise<Counted> {
  control(pid, 'instrumentation on', 'zero');
  await work();
  control(pid, 'dump', 'instrumentation off');
  const base = `callgrind.${pid}.`;
  const dumps = readdirSync(outDir).filter((f) => f.startsWith(base)).sort((a, b) => Number(a.slice(base.length)) - Number(b.slice(base.length)));
  const last = dumps.at(-1);
  if (!last) throw new Error(`callgrind wrote no dump for pid ${pid} in ${outDir}`);
  const file = join(outDir, last);
  const dump = readFileSync(file, 'utf8');
  const all = eventTotals(dump);
  const costs = selfCosts(dump);
  return {
    totals: Object.fromEntries(EVENTS.map(([spec, measure]) => [measure, eventSum(all, spec)])) as Record<Measure, number>,
    summaryGap: summaryGap(dump),
    instructions: byCategory(costs, 'Ir'),
    l1iMisses: byCategory(costs, 'I1mr'),
  };
}

function perUnit(b: Breakdown, units: number): Breakdown {
  return Object.fromEntries(CATEGORIES.map((c) => [c, Math.round(b[c] / units)])) as Breakdown;
}

export interface InstructionRun {
  workload: string;
  path: Tunnel;
  round: number;
  /** Per unit of the workload (a round trip, or a MiB). */
  counts: Record<Measure, number>;
  categories: { instructions: Breakdown; l1i_misses: Breakdown };
  /** callgrind's own total instructions against its rows' (0.001: a tenth of a percent more). */
  summary_gap: number;
}

/** Past this, a round's dump disagrees with itself enough to say so. */
const SUMMARY_GAP_WARN = 0.001;

const pad = (cells: string[], widths: number[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();

function grid(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [pad(head, widths), ...rows.map((r) => pad(r, widths))];
}

/** Each figure's medians and ratio, then where the median round's instructions and L1i misses go, by category. */
export function instructionsTable(runs: InstructionRun[]): string {
  const of = (workload: string, p: Tunnel): InstructionRun[] => runs.filter((r) => r.workload === workload && r.path === p);
  const rows: string[][] = [];
  for (const w of WORKLOADS) {
    for (const [, measure] of EVENTS) {
      const m = (p: Tunnel): number => median(of(w.name, p).map((r) => r.counts[measure]));
      const ratios = of(w.name, 'relay').map((r) => r.counts[measure] / (of(w.name, 'stunnel').find((x) => x.round === r.round)?.counts[measure] ?? NaN));
      rows.push([`${w.name}_${measure} (per ${w.unit})`, m('stunnel').toFixed(0), m('relay').toFixed(0), (m('relay') / m('stunnel')).toFixed(2),
        `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`]);
    }
  }
  const out = grid(['figure (↓)', 'stunnel', 'efs-relay', 'relay/stunnel', 'by round'], rows);
  for (const w of WORKLOADS) {
    const medianRun = (p: Tunnel): InstructionRun => {
      const sorted = of(w.name, p).sort((a, b) => a.counts.instructions - b.counts.instructions);
      return sorted[Math.floor((sorted.length - 1) / 2)]!;
    };
    const [s, r] = [medianRun('stunnel'), medianRun('relay')];
    const cats = CATEGORIES.filter((c) => s.categories.instructions[c] || r.categories.instructions[c]);
    out.push('', ...grid([`${w.name} per ${w.unit}, by category`, 'stunnel instr', 'efs-relay instr', 'stunnel L1i miss', 'efs-relay L1i miss'],
      cats.map((c) => [c, String(s.categories.instructions[c]), String(r.categories.instructions[c]), String(s.categories.l1i_misses[c]), String(r.categories.l1i_misses[c])])));
  }
  return out.join('\n');
}

/** Counts each tunnel's instructions per round trip of 200-byte and 8 KiB RPCs and per MiB of bulk and NFS each way; writes build/bench/instructions.json. */
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
    say(`efs-relay bench (instructions, ${mode}): starting the service, ganesha, the TLS terminator, and stunnel clients and efs-relayd under callgrind`);
    const ganesha = await benchGanesha();
    procs.push(await startService());
    procs.push(await startTerminator(dir, pki, ganesha.nfsPort));
    const wrap = callgrind(outDir);
    // One stunnel client per file system, as efs-utils runs them.
    const st = await startStunnelClient(dir, pki, 'stunnel-bulk', STUNNEL_BULK_PORT, BULK_TARGET, BULK_FS, wrap);
    procs.push(st);
    const stNfs = await startStunnelClient(dir, pki, 'stunnel-nfs', STUNNEL_NFS_PORT, NFS_TARGET, NFS_FS, wrap);
    procs.push(stNfs);
    // The daemon's node is started by valgrind itself: valgrind does not follow the launcher script's exec.
    const launcher = join(dir, 'efs-relayd-callgrind');
    writeFileSync(launcher, `#!/bin/sh\nexec ${wrap.argv.map((a) => `'${a}'`).join(' ')} '${(await relayNode()).bin}' '${join(ROOT, 'build/lib/efs-relayd.mjs')}' "$@"\n`);
    chmodSync(launcher, 0o755);
    // Its timers off (health probes, the CA file's check, all but an hourly /proc/mounts poll): their work does not
    // come with round trips, and a round under valgrind lasts long enough for one probe's TLS handshake to add
    // about 1,700 instructions to each of its round trips.
    const quiet = { port_range: { first: 22000, last: 22010 }, health: { probe_interval: 0, trust_check_interval: 0 }, mount: { poll_interval: 3600, proc_mounts: '/proc/mounts' } };
    relay = await new Daemon(relayConfig(pki, quiet)).start(launcher, undefined, wrap.env, 180_000);
    const tunnelPort = async (fsId: string, target: string): Promise<number> =>
      (await relay!.efsctlJson<{ tunnel: { port: number } }>('add', fsId, '-o', `mounttargetip=${target},region=${REGION}`)).tunnel.port;
    const [relayPort, relayNfsPort] = [await tunnelPort(BULK_FS, BULK_TARGET), await tunnelPort(NFS_FS, NFS_TARGET)];
    // Each kind's port and process, by tunnel: the daemon's two tunnels share its process.
    const port = (w: Workload, p: Tunnel): number => (w.kind === 'nfs' ? { stunnel: STUNNEL_NFS_PORT, relay: relayNfsPort } : { stunnel: STUNNEL_BULK_PORT, relay: relayPort })[p];
    const pid = (w: Workload, p: Tunnel): number => (p === 'relay' ? relay!.pid : w.kind === 'nfs' ? stNfs.pid : st.pid);
    const nfsSide: NfsSide = { ganesha, dir };

    const runs: InstructionRun[] = [];
    for (const w of WORKLOADS) {
      const conns = new Map<Tunnel, WorkloadConnection>();
      const { warm, counted: units } = size[w.kind];
      try {
        for (const p of TUNNELS) {
          say(`${w.name}: ${p}, ${warm} ${w.unit === 'MiB' ? 'MiB' : 'round trips'} to warm up`);
          const c = await w.open(port(w, p), size, nfsSide, p);
          conns.set(p, c);
          await c.run(warm);
        }
        for (let round = 1; round <= size.rounds; round++) {
          for (const p of round % 2 ? TUNNELS : [...TUNNELS].reverse()) {
            const c = await counted(pid(w, p), outDir, () => conns.get(p)!.run(units));
            const counts = Object.fromEntries(EVENTS.map(([, m]) => [m, c.totals[m] / units])) as Record<Measure, number>;
            runs.push({
              workload: w.name, path: p, round, counts, categories: { instructions: perUnit(c.instructions, units), l1i_misses: perUnit(c.l1iMisses, units) },
              summary_gap: c.summaryGap,
            });
            say(`${w.name} round ${round}/${size.rounds}: ${p} ${Math.round(counts.instructions)} instructions and ${Math.round(counts.l1i_misses)} L1i misses per ${w.unit}`);
            if (Math.abs(c.summaryGap) > SUMMARY_GAP_WARN) {
              say(`  warning: callgrind's summary of this round is ${(c.summaryGap * 100).toFixed(2)}% off the sum of its rows (used here): a doubtful round`);
            }
          }
        }
      } finally {
        for (const c of conns.values()) c.close();
      }
    }

    const medians = Object.fromEntries(WORKLOADS.flatMap((w) => EVENTS.map(([, measure]) => [`${w.name}_${measure}`,
      Object.fromEntries(TUNNELS.map((p) => [p, median(runs.filter((r) => r.workload === w.name && r.path === p).map((r) => r.counts[measure]))]))])));
    const result = {
      date: new Date().toISOString(),
      mode: `instructions-${mode}`,
      sizes: size,
      machine: {
        cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, node_openssl: process.versions.openssl,
        relay_node: (await relayNode()).version, relay_node_openssl: (await relayNode()).openssl,
        stunnel: toolVersion('stunnel', ['-version'], 'stunnel '), stunnel_openssl: toolVersion('openssl', ['version'], 'OpenSSL'),
        valgrind: toolVersion('valgrind', ['--version'], 'valgrind'),
      },
      glibc_tunables: GLIBC_TUNABLES,
      seconds: (Date.now() - started) / 1000,
      units: Object.fromEntries(WORKLOADS.map((w) => [w.name, w.unit])),
      medians,
      runs,
    };
    mkdirSync(join(ROOT, 'build/bench'), { recursive: true });
    writeFileSync(join(ROOT, 'build/bench/instructions.json'), JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`${instructionsTable(runs)}\n\nPer round trip or MiB of each tunnel's process (all its threads), counted by callgrind with its simulated caches and branch predictor: ${size.rpc.counted} round trips a round after ${size.rpc.warm} to warm up, ${size.bulk.counted} MiB a round after ${size.bulk.warm} (bulk), ${size.nfs.counted} MiB a round after ${size.nfs.warm} in files of ${size.nfs.file} MiB, each its own connection (NFS); ${size.rounds} round(s), medians; ${result.machine.valgrind}.\nRaw runs: build/bench/instructions.json (${result.seconds.toFixed(0)} s)\n`);
  } finally {
    await relay?.stop();
    for (const p of procs.reverse()) await p.stop();
    await Ganesha.stopShared();
    removeTempDirs();
  }
}
