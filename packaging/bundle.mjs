// Bundles each executable into one ESM file, build/lib/<name>.mjs, with its
// dependencies inlined and the package.json version stamped in, and puts a
// small launcher at build/bin/<name>. (Node decides ESM by extension, and a
// name like mount.efs has none it knows.)
import { build } from 'esbuild';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';

const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
const entries = { 'efs-relayd': 'daemon/main.ts', efsctl: 'cli/efsctl.ts', 'mount.efs': 'cli/mount-efs.ts' };

await mkdir('build/bin', { recursive: true });
for (const [name, entry] of Object.entries(entries)) {
  await build({
    entryPoints: [entry],
    outfile: `build/lib/${name}.mjs`,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // No inline source map: Node ignores it without --enable-source-maps, and
    // 1.4 MB more source text on the heap made V8 run a full GC every few
    // tens of milliseconds under bulk transfers (README, Performance).
    logLevel: 'warning',
    define: { __EFS_RELAY_VERSION__: JSON.stringify(pkg.version) },
    // CommonJS dependencies (prom-client) call require(); give the ESM bundle one.
    banner: { js: 'import { createRequire as __efsCreateRequire } from "node:module";\nconst require = __efsCreateRequire(import.meta.url);' },
  });
  const launcher = `#!/bin/sh\nexec node "$(dirname "$(readlink -f "$0")")/../lib/${name}.mjs" "$@"\n`;
  await writeFile(`build/bin/${name}`, launcher);
  await chmod(`build/bin/${name}`, 0o755);
}
