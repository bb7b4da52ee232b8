// What the bench reports: every figure with its unit, which way is better
// and its target (issue #5), and the table printed on stdout. Kept apart
// from bench.ts, which runs the workloads, so that it can be unit-tested.
import type { Path } from './paths.js';
import { PATHS } from './paths.js';

/**
 * A performance target of issue #5: the efs-relay/stunnel ratio of the
 * medians (`ratio`), or efs-relay's own median (`relay`), at `value` or
 * better, in the figure's better direction.
 */
export interface Target {
  of: 'ratio' | 'relay';
  value: number;
}

/** Every figure the bench reports: its unit, which way is better, and its target if it has one. */
export const FIGURES: Record<string, { unit: string; better: 'higher' | 'lower'; paths: readonly Path[]; target?: Target }> = {
  upload_mb_s: { unit: 'MB/s', better: 'higher', paths: PATHS, target: { of: 'ratio', value: 1 } },
  download_mb_s: { unit: 'MB/s', better: 'higher', paths: PATHS, target: { of: 'ratio', value: 1 } },
  upload_cpu_s_per_gib: { unit: 'CPU s/GiB', better: 'lower', paths: ['stunnel', 'relay'], target: { of: 'ratio', value: 1 } },
  download_cpu_s_per_gib: { unit: 'CPU s/GiB', better: 'lower', paths: ['stunnel', 'relay'], target: { of: 'ratio', value: 1 } },
  rpc200_p50_us: { unit: 'µs', better: 'lower', paths: PATHS },
  rpc200_p99_us: { unit: 'µs', better: 'lower', paths: PATHS, target: { of: 'ratio', value: 1 } },
  rpc8k_p50_us: { unit: 'µs', better: 'lower', paths: PATHS },
  rpc8k_p99_us: { unit: 'µs', better: 'lower', paths: PATHS, target: { of: 'ratio', value: 1 } },
  rpc200_cpu_us: { unit: 'CPU µs/RT', better: 'lower', paths: ['stunnel', 'relay'] },
  rpc8k_cpu_us: { unit: 'CPU µs/RT', better: 'lower', paths: ['stunnel', 'relay'] },
  nfs_write_mb_s: { unit: 'MB/s', better: 'higher', paths: PATHS, target: { of: 'ratio', value: 1 } },
  nfs_read_mb_s: { unit: 'MB/s', better: 'higher', paths: PATHS, target: { of: 'ratio', value: 1 } },
  nfs_write_cpu_s_per_gib: { unit: 'CPU s/GiB', better: 'lower', paths: ['stunnel', 'relay'] },
  nfs_read_cpu_s_per_gib: { unit: 'CPU s/GiB', better: 'lower', paths: ['stunnel', 'relay'] },
  connect_ms: { unit: 'ms', better: 'lower', paths: PATHS },
  idle_wakeups_per_s: { unit: '/s', better: 'lower', paths: ['stunnel', 'relay'] },
  // 1000 idle tunnels in at most 150 MiB; with fewer (--quick, --smoke) the same bound is only a sanity check.
  idle_tunnels_rss_mib: { unit: 'MiB', better: 'lower', paths: ['stunnel', 'relay'], target: { of: 'relay', value: 150 } },
  startup_s: { unit: 's', better: 'lower', paths: ['relay'], target: { of: 'relay', value: 2 } },
  open_conns_rss_mib: { unit: 'MiB', better: 'lower', paths: ['relay'] },
  open_conns_fds: { unit: 'fds', better: 'lower', paths: ['relay'] },
};

export interface Run {
  figure: string;
  path: Path;
  round: number;
  value: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function fmt(v: number | undefined): string {
  if (v === undefined) return '-';
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/** a/b as the table shows it, to two decimals; null when either is missing or b is 0. */
function shownRatio(a: number | undefined, b: number | undefined): string | null {
  return a !== undefined && b !== undefined && b !== 0 ? (a / b).toFixed(2) : null;
}

/**
 * efs-relay/stunnel within each round. The two ran minutes apart at most, so
 * the spread of these shows how much of a median ratio is noise.
 */
export function roundRatios(runs: Run[], figure: string): number[] {
  const out: number[] = [];
  for (const r of runs) {
    if (r.figure !== figure || r.path !== 'relay') continue;
    const s = runs.find((x) => x.figure === figure && x.path === 'stunnel' && x.round === r.round);
    if (s && s.value !== 0) out.push(r.value / s.value);
  }
  return out;
}

export type Medians = Record<string, Partial<Record<Path, number>>>;

export interface TargetResult {
  /** e.g. "relay/stunnel ≥ 1.0" or "efs-relay ≤ 150 MiB". */
  target: string;
  value: number;
  met: boolean;
}

/**
 * Whether this run's medians meet each figure's target. Figures without a
 * target are left out, and so is a ratio that cannot be formed (stunnel's CPU
 * of a tiny --smoke transfer can be 0 clock ticks).
 */
export function targetResults(medians: Medians): Record<string, TargetResult> {
  const out: Record<string, TargetResult> = {};
  for (const [figure, spec] of Object.entries(FIGURES)) {
    const t = spec.target;
    const m = medians[figure] ?? {};
    if (!t || m.relay === undefined) continue;
    // A ratio is judged as the table shows it; NaN when it cannot be formed.
    const value = t.of === 'relay' ? m.relay : Number(shownRatio(m.relay, m.stunnel) ?? NaN);
    if (Number.isNaN(value)) continue;
    const sign = spec.better === 'higher' ? '≥' : '≤';
    out[figure] = {
      target: t.of === 'relay' ? `efs-relay ${sign} ${t.value} ${spec.unit}` : `relay/stunnel ${sign} ${t.value.toFixed(1)}`,
      value,
      met: spec.better === 'higher' ? value >= t.value : value <= t.value,
    };
  }
  return out;
}

export function table(medians: Medians, byRound: Record<string, number[]>): string {
  const targets = targetResults(medians);
  const rows = Object.entries(FIGURES).map(([figure, spec]) => {
    const m = medians[figure] ?? {};
    const ratio = (a?: number, b?: number): string => shownRatio(a, b) ?? '-';
    const rounds = byRound[figure] ?? [];
    const spread = rounds.length ? `${Math.min(...rounds).toFixed(2)}–${Math.max(...rounds).toFixed(2)}` : '-';
    return [
      `${figure} (${spec.unit}, ${spec.better === 'higher' ? '↑' : '↓'})`,
      fmt(m.plain), fmt(m.stunnel), fmt(m.relay), ratio(m.relay, m.stunnel), spread, ratio(m.relay, m.plain),
      targets[figure] ? `${targets[figure].met ? 'met' : 'NOT met'} (${targets[figure].target})` : spec.target ? 'not judged (no ratio)' : '',
    ];
  });
  const head = ['figure', 'plain', 'stunnel', 'efs-relay', 'relay/stunnel', 'by round', 'relay/plain', 'target'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  // The figure's name and the target read left to right; the numbers are right-aligned.
  const left = (i: number): boolean => i === 0 || i === head.length - 1;
  const line = (cells: string[]): string => cells.map((c, i) => (left(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}
