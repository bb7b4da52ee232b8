// The self-contained binary: all of efs-relay bundled into one CommonJS file,
// injected as a Node single executable application into a copy of this
// machine's node. One binary; efsctl and mount.efs are links to it.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { nodeSupportWarning } from './node-support.mjs';

const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
const out = 'build/sea';
await mkdir(out, { recursive: true });
await build({
  entryPoints: ['cli/multicall.ts'],
  outfile: `${out}/efs-relay.cjs`,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
  define: { __EFS_RELAY_VERSION__: JSON.stringify(pkg.version) },
});
await writeFile(`${out}/sea-config.json`, JSON.stringify({ main: `${out}/efs-relay.cjs`, output: `${out}/sea-prep.blob`, disableExperimentalSEAWarning: true }));
execFileSync(process.execPath, ['--experimental-sea-config', `${out}/sea-config.json`], { stdio: 'inherit' });
const unsupported = nodeSupportWarning(process.version, process.release.lts, process.versions.openssl, new Date().toISOString().slice(0, 10));
if (unsupported) process.stderr.write(`make sea: WARNING: ${unsupported}\n`);
await copyFile(process.execPath, `${out}/efs-relayd`);
await chmod(`${out}/efs-relayd`, 0o755);
execFileSync('npx', ['postject', `${out}/efs-relayd`, 'NODE_SEA_BLOB', `${out}/sea-prep.blob`,
  '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'], { stdio: ['ignore', 'ignore', 'inherit'] });
