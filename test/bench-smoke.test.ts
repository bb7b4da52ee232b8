// The benchmark on tiny sizes, once: proves every figure is produced. No
// timing is judged here; `make bench` is where numbers are read.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { commandMissing, escapeRegExp, ROOT, run, skipIf } from './helpers/daemon.js';
import { Ganesha, requireNfs } from './helpers/nfs.js';
import { CATEGORIES, type InstructionRun } from './bench/instructions.js';
import { namespacesUnavailable } from './helpers/netns.js';

const FIGURES = [
  'upload_mb_s', 'download_mb_s', 'upload_cpu_s_per_gib', 'download_cpu_s_per_gib', 'rpc200_p50_us', 'rpc200_p99_us',
  'rpc8k_p50_us', 'rpc8k_p99_us', 'rpc200_cpu_us', 'rpc8k_cpu_us', 'nfs_write_mb_s', 'nfs_read_mb_s', 'nfs_write_cpu_s_per_gib',
  'nfs_read_cpu_s_per_gib', 'connect_ms', 'idle_wakeups_per_s', 'idle_tunnels_rss_mib', 'startup_s', 'open_conns_rss_mib', 'open_conns_fds',
];

const TARGETED = [
  'download_cpu_s_per_gib', 'download_mb_s', 'idle_tunnels_rss_mib', 'nfs_read_mb_s', 'nfs_write_mb_s', 'rpc200_p99_us', 'rpc8k_p99_us',
  'startup_s', 'upload_cpu_s_per_gib', 'upload_mb_s',
];

describe('benchmark smoke run', function () {
  before(async function () {
    requireNfs(this);
    skipIf(this, await commandMissing('stunnel', 'as root: apt-get install stunnel4'));
  });

  it('produces every figure for every path it measures, a table on stdout and build/bench/results.json', async () => {
    const g = await Ganesha.get();
    const r = await run('node', ['--expose-gc', join(ROOT, 'build/js/test/bench/bench.js'), '--smoke'], {
      env: { ...process.env, EFS_RELAY_BENCH_NFS: `${g.nfsPort},${g.mountPort},${g.exportPath}` }, timeoutMs: 110_000,
    });
    expect(r.code, r.stderr).to.equal(0);
    const result = JSON.parse(readFileSync(join(ROOT, 'build/bench/results.json'), 'utf8')) as {
      mode: string; machine: Record<string, unknown>; medians: Record<string, Record<string, number>>;
      relay_stunnel_by_round: Record<string, number[]>; path_order_by_round: string[][];
      targets: Record<string, { target: string; value: number; met: boolean }>;
    };
    expect(result.mode).to.equal('smoke');
    expect(Object.keys(result.machine).sort()).to.deep.equal(['cores', 'cpu', 'node', 'node_openssl', 'relay_node', 'relay_node_openssl', 'stunnel', 'stunnel_openssl']);
    // The daemon measured runs on the node the packaged binary carries, and the table's footnote says which.
    const pinned = `v${(JSON.parse(readFileSync(join(ROOT, 'packaging/node-runtime.json'), 'utf8')) as { version: string }).version}`;
    expect(result.machine.relay_node).to.equal(pinned);
    expect(r.stdout).to.contain(`efs-relayd on Node ${pinned} (OpenSSL ${String(result.machine.relay_node_openssl)})`);
    expect(Object.keys(result.medians).sort()).to.deep.equal([...FIGURES].sort());
    for (const f of FIGURES) {
      const paths = Object.keys(result.medians[f]!);
      expect(paths.length, `${f} has figures`).to.be.greaterThan(0);
      for (const p of paths) expect(Number.isFinite(result.medians[f]![p]), `${f} ${p}`).to.equal(true);
    }
    expect(result.medians.upload_mb_s).to.have.all.keys('plain', 'stunnel', 'relay');
    expect(result.path_order_by_round).to.deep.equal([['plain', 'stunnel', 'relay']]);
    // One round: each figure both tunnels measured (stunnel's not 0, as CPU seconds of a tiny transfer can be) has its one ratio.
    for (const f of FIGURES.filter((x) => result.medians[x]!.relay !== undefined && result.medians[x]!.stunnel)) {
      expect(result.relay_stunnel_by_round[f], f).to.have.length(1);
      expect(result.relay_stunnel_by_round[f]![0]).to.be.closeTo(result.medians[f]!.relay! / result.medians[f]!.stunnel!, 1e-9);
    }
    expect(r.stdout).to.match(/^figure\s+plain\s+stunnel\s+efs-relay\s+relay\/stunnel\s+by round\s+relay\/plain\s+target$/m);
    for (const f of FIGURES) expect(r.stdout).to.contain(f);
    // Every target of the issue is judged, in results.json and on the figure's line of the table.
    // A ratio with stunnel's figure at 0 (CPU seconds of a tiny transfer) cannot be judged, and says so.
    const judged = TARGETED.filter((f) => ['idle_tunnels_rss_mib', 'startup_s'].includes(f) || result.medians[f]!.stunnel);
    expect(Object.keys(result.targets).sort()).to.deep.equal(judged);
    for (const f of TARGETED.filter((x) => !judged.includes(x))) expect(r.stdout).to.match(new RegExp(`^${f} .*  not judged \\(no ratio\\)$`, 'm'));
    for (const [f, t] of Object.entries(result.targets)) {
      expect(t.met, f).to.be.a('boolean');
      expect(r.stdout).to.match(new RegExp(`^${f} .*  ${t.met ? 'met' : 'NOT met'} \\(${escapeRegExp(t.target)}\\)$`, 'm'));
    }
  });
  it('counts both tunnels\' instructions, L1 cache misses and mispredicted branches per RPC round trip and per MiB of bulk and NFS under callgrind, by category, on stdout and in build/bench/instructions.json', async function () {
    skipIf(this, await commandMissing('valgrind', 'as root: apt-get install valgrind'));
    const g = await Ganesha.get();
    const r = await run('node', ['--expose-gc', join(ROOT, 'build/js/test/bench/bench.js'), '--instructions', '--smoke'], {
      env: { ...process.env, EFS_RELAY_BENCH_NFS: `${g.nfsPort},${g.mountPort},${g.exportPath}` }, timeoutMs: 200_000,
    });
    expect(r.code, r.stderr).to.equal(0);
    const result = JSON.parse(readFileSync(join(ROOT, 'build/bench/instructions.json'), 'utf8')) as {
      mode: string; machine: Record<string, string>; medians: Record<string, Record<string, number>>;
      runs: InstructionRun[];
    };
    expect(result.mode).to.equal('instructions-smoke');
    expect(result.machine.valgrind).to.match(/^valgrind-\d/);
    const unit = { rpc200: 'round trip', rpc8k: 'round trip', upload: 'MiB', download: 'MiB', nfs_write: 'MiB', nfs_read: 'MiB' } as Record<string, string>;
    const figures = Object.keys(unit).flatMap((w) => ['instructions', 'l1i_misses', 'l1d_misses', 'branch_misses'].map((m) => `${w}_${m}`));
    expect(Object.keys(result.medians).sort()).to.deep.equal([...figures].sort());
    expect(r.stdout).to.match(/^figure \(↓\)\s+stunnel\s+efs-relay\s+relay\/stunnel\s+by round$/m);
    for (const figure of figures) {
      const m = result.medians[figure]!;
      expect(m, figure).to.have.all.keys('stunnel', 'relay');
      // A TLS record each way is thousands of instructions (a MiB millions), and no code path of that length stays in the L1 caches whole.
      for (const v of Object.values(m)) expect(v, figure).to.be.greaterThan(figure.endsWith('_instructions') ? 1000 : 0);
      expect(r.stdout).to.match(new RegExp(`^${figure} \\(per ${unit[Object.keys(unit).find((w) => figure.startsWith(`${w}_`))!]}\\)\\s+${Math.round(m.stunnel!)}\\s+${Math.round(m.relay!)}\\s+${(m.relay! / m.stunnel!).toFixed(2)}\\s`, 'm'));
    }
    // Each process's instructions are found in its own code: OpenSSL's in both, stunnel's own, and V8's in the daemon.
    for (const run of result.runs) {
      for (const measure of ['instructions', 'l1i_misses'] as const) {
        const sum = Object.values(run.categories[measure]!).reduce((a, b) => a + b, 0);
        // Both come from the dump's rows: equal within the rounding of each category to a count per round trip or MiB.
        const total = run.counts[measure]!;
        expect(sum, `${run.workload} ${run.path}: ${measure} by category add up to the total`).to.be.closeTo(total, CATEGORIES.length / 2);
      }
      expect(run.summary_gap, `${run.workload} ${run.path}: callgrind's summary against its rows`).to.be.a('number');
      expect(run.categories.instructions!.OpenSSL, `${run.workload} ${run.path}`).to.be.greaterThan(0);
      expect(run.categories.instructions![run.path === 'stunnel' ? 'stunnel' : 'V8'], `${run.workload} ${run.path}`).to.be.greaterThan(0);
    }
    for (const w of Object.keys(unit)) {
      expect(r.stdout).to.match(new RegExp(`^${w} per ${unit[w]}, by category\\s+stunnel instr\\s+efs-relay instr\\s+stunnel L1i miss\\s+efs-relay L1i miss$`, 'm'));
    }
  });
  it('measures a netns= tunnel against one of the daemon\'s own namespace with --netns: every figure for both, their ratio, a table and build/bench/netns.json', async function () {
    skipIf(this, namespacesUnavailable());
    const r = await run('node', ['--expose-gc', join(ROOT, 'build/js/test/bench/bench.js'), '--netns', '--smoke'], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).to.equal(0);
    const result = JSON.parse(readFileSync(join(ROOT, 'build/bench/netns.json'), 'utf8')) as {
      mode: string; runs: Array<{ figure: string; way: string; round: number; value: number }>; ratios: Record<string, number>;
    };
    expect(result.mode).to.equal('netns-smoke');
    const figures = ['upload_mb_s', 'download_mb_s', 'upload_cpu_s_per_gib', 'download_cpu_s_per_gib', 'connect_ms'];
    for (const f of figures) {
      for (const way of ['own', 'netns']) expect(result.runs.filter((x) => x.figure === f && x.way === way && Number.isFinite(x.value)), `${f} ${way}`).to.have.length(1);
      expect(r.stdout).to.match(new RegExp(`^${f} +\\S+ +\\S+ +\\S+ +\\S+$`, 'm'));
    }
    // Throughput and connection setup always have a ratio (CPU seconds of a tiny transfer may be 0 and have none).
    for (const f of ['upload_mb_s', 'download_mb_s', 'connect_ms']) expect(result.ratios[f], f).to.be.greaterThan(0);
    expect(r.stdout).to.match(/^figure +own +netns +netns\/own +by round$/m);
  });
});
