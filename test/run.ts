// Runs the whole suite with mocha and ends with the plain summary line CI
// reads: "N passed, N failed" (", N skipped" when any were skipped).
import Mocha from 'mocha';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ganesha } from './helpers/nfs.js';
import { removeTempDirs } from './helpers/daemon.js';

const here = import.meta.dirname;
const files: string[] = [];
const walk = (dir: string): void => {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.test.js')) files.push(p);
  }
};
walk(here);
files.sort();

const grep = process.env.TEST_GREP;
const mocha = new Mocha({ reporter: 'spec', timeout: 120_000, ...(grep ? { grep } : {}) });
for (const f of files) mocha.addFile(f);
await mocha.loadFilesAsync();

const stats = await new Promise<{ passes: number; failures: number; pending: number }>((resolve) => {
  const runner = mocha.run();
  runner.on('end', () => resolve({ passes: runner.stats?.passes ?? 0, failures: runner.stats?.failures ?? 0, pending: runner.stats?.pending ?? 0 }));
});
await Ganesha.stopShared().catch((err: Error) => process.stderr.write(`stopping ganesha: ${err.message}\n`));
removeTempDirs();
const skipped = stats.pending > 0 ? `, ${stats.pending} skipped` : '';
process.stdout.write(`\n${stats.passes} passed, ${stats.failures} failed${skipped}\n`);
process.exit(stats.failures > 0 ? 1 : 0);
