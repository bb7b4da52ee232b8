// Bundles each executable into one ESM file under build/bin with its
// dependencies inlined, and stamps the package.json version into it.
import { build } from 'esbuild';
import { chmod, readFile } from 'node:fs/promises';

const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
const entries = { 'efs-relayd': 'daemon/main.ts', efsctl: 'cli/efsctl.ts' };

for (const [name, entry] of Object.entries(entries)) {
  const outfile = `build/bin/${name}`;
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'inline',
    logLevel: 'warning',
    define: { __EFS_RELAY_VERSION__: JSON.stringify(pkg.version) },
    // CommonJS dependencies (prom-client) call require(); give the ESM bundle one.
    banner: { js: '#!/usr/bin/env node\nimport { createRequire as __efsCreateRequire } from "node:module";\nconst require = __efsCreateRequire(import.meta.url);' },
  });
  await chmod(outfile, 0o755);
}
