// The Node.js that the packaged binary carries. The daemon runs as root and
// checks every mount target's certificate with that Node's OpenSSL, so `make
// sea` copies a supported LTS pinned by version and checksum in
// node-runtime.json, not whatever node the build machine has. The official
// binaries come from the npm registry (node-linux-<arch>), the registry builds
// may reach. SEA_NODE=/path/to/node builds on another one instead. The bench
// runs its daemon on the same pinned node.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** The pin: node-runtime.json's version, and the npm package and integrity for `arch` (process.arch). */
export function pinnedRuntime(arch = process.arch) {
  const pin = JSON.parse(readFileSync(join(ROOT, 'packaging/node-runtime.json'), 'utf8'));
  const integrity = pin.integrity[arch];
  if (!integrity) {
    throw new Error(`packaging/node-runtime.json pins no Node.js for ${arch} (only ${Object.keys(pin.integrity).join(', ')}): add node-linux-${arch}@${pin.version}'s integrity (npm view node-linux-${arch}@${pin.version} dist.integrity), or build with SEA_NODE=/path/to/node`);
  }
  return { version: pin.version, pkg: `node-linux-${arch}`, integrity };
}

/** Throws unless `file`'s content has `integrity` (an npm "sha512-<base64>" string). */
export function checkIntegrity(file, integrity, what) {
  const [algo, expected] = integrity.split(/-(.*)/s);
  const actual = createHash(algo).update(readFileSync(file)).digest('base64');
  if (actual !== expected) {
    throw new Error(`${what} has checksum ${algo}-${actual}, not the ${integrity} that packaging/node-runtime.json pins: it is not the release pinned, so no binary is built on it (deleted; the next make fetches it again)`);
  }
}

/**
 * Path of the pinned node under `cache` (build/node-runtime), fetched with `npm pack` and checked against the pin
 * when missing. `say` tells of the download, the one slow step.
 */
export function pinnedNode(cache = join(ROOT, 'build/node-runtime'), say = (line) => process.stderr.write(`${line}\n`), arch = process.arch) {
  const { version, pkg, integrity } = pinnedRuntime(arch);
  // Named node, as the official layout has it (the instruction counts of make bench tell node's code by that name).
  const bin = join(cache, `v${version}-linux-${arch}`, 'node');
  if (existsSync(bin)) return bin;
  mkdirSync(dirname(bin), { recursive: true });
  const tarball = join(cache, `${pkg}-${version}.tgz`);
  if (!existsSync(tarball)) {
    say(`Fetching Node.js v${version} for the binary (${pkg}, about 55 MB) from the npm registry`);
    try {
      execFileSync('npm', ['pack', `${pkg}@${version}`, '--pack-destination', cache, '--silent'], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw new Error(`could not fetch ${pkg}@${version} from the npm registry (${String(e.stderr ?? e.message).trim().split('\n').pop()}): check the network or npm's registry setting, or build with SEA_NODE=/path/to/node (an LTS line still supported)`);
    }
  }
  try {
    checkIntegrity(tarball, integrity, `${pkg}-${version}.tgz`);
  } catch (e) {
    rmSync(tarball, { force: true });
    throw e;
  }
  const tmp = mkdtempSync(join(cache, 'unpack-'));
  try {
    execFileSync('tar', ['-xzf', tarball, '-C', tmp, 'package/bin/node']);
    chmodSync(join(tmp, 'package/bin/node'), 0o755);
    renameSync(join(tmp, 'package/bin/node'), bin);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return bin;
}

/** What a node binary is: its version, LTS codename (undefined off LTS) and OpenSSL, asked of the binary itself. */
export function describeNode(bin) {
  const out = execFileSync(bin, ['-p', 'JSON.stringify([process.version, process.release.lts, process.versions.openssl])'], { encoding: 'utf8' });
  const [version, lts, openssl] = JSON.parse(out);
  return { version, lts, openssl };
}
