// The self-contained binary: all of efs-relay bundled into one CommonJS file,
// injected as a Node single executable application into a copy of the pinned
// Node.js LTS (node-runtime.mjs), or of SEA_NODE when set. One binary;
// efsctl and mount.efs are links to it.
import { build } from 'esbuild';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { describeNode, pinnedNode } from './node-runtime.mjs';
import { nodeSupportWarning } from './node-support.mjs';

const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
const out = 'build/sea';
let node;
let runtime;
try {
  node = process.env.SEA_NODE || pinnedNode(undefined, (line) => process.stderr.write(`make sea: ${line}\n`));
} catch (e) {
  process.stderr.write(`make sea: ${e.message}\n`);
  process.exit(1);
}
try {
  runtime = describeNode(node);
} catch (e) {
  process.stderr.write(`make sea: cannot run ${node} to ask its version (${e.message.split('\n')[0]}); SEA_NODE must name a node binary\n`);
  process.exit(1);
}
await mkdir(out, { recursive: true });
await build({
  entryPoints: ['cli/multicall.ts'],
  outfile: `${out}/efs-relay.cjs`,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: `node${runtime.version.slice(1).split('.')[0]}`,
  logLevel: 'warning',
  define: { __EFS_RELAY_VERSION__: JSON.stringify(pkg.version) },
});
// execArgvExtension "none": the binary ignores NODE_OPTIONS. It runs as root (the daemon, and efsctl and mount.efs
// under sudo or mount), and NODE_OPTIONS would let whoever sets its environment load code into it (--require,
// --import) or open Node's debugger (--inspect).
await writeFile(`${out}/sea-config.json`, JSON.stringify({
  main: `${out}/efs-relay.cjs`, output: `${out}/sea-prep.blob`, disableExperimentalSEAWarning: true, execArgvExtension: 'none',
}));
// The blob must come from the node it is injected into: its format is that release's.
execFileSync(node, ['--experimental-sea-config', `${out}/sea-config.json`], { stdio: 'inherit' });
const unsupported = nodeSupportWarning(runtime.version, runtime.lts, runtime.openssl, new Date().toISOString().slice(0, 10));
if (unsupported) process.stderr.write(`make sea: WARNING: ${unsupported}\n`);
await copyFile(node, `${out}/efs-relayd`);
await chmod(`${out}/efs-relayd`, 0o755);
const inject = spawnSync('npx', ['postject', `${out}/efs-relayd`, 'NODE_SEA_BLOB', `${out}/sea-prep.blob`,
  '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
// LIEF, inside postject, warns of every ELF note section whose name it cannot place; the binary is sound (the
// package tests run it). Anything else it says is shown.
const said = inject.stderr.split('\n').filter((l) => l && !/^warning: Can't find string offset for section name/.test(l));
if (said.length) process.stderr.write(`${said.join('\n')}\n`);
if (inject.status !== 0) {
  process.stderr.write(`make sea: postject failed (exit ${inject.status ?? inject.signal}); build/sea/efs-relayd is not usable\n`);
  process.exit(1);
}
