// `make sea` builds the binary on the Node.js LTS pinned in packaging/node-runtime.json, checked by its checksum.
import { expect } from 'chai';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, run, skipIf, tempDir } from '../helpers/daemon.js';

interface Pin {
  version: string;
  pkg: string;
  integrity: string;
}
const runtime = (await import(join(ROOT, 'packaging/node-runtime.mjs'))) as {
  pinnedRuntime(arch?: string): Pin;
  pinnedNode(cache?: string, say?: (line: string) => void, arch?: string): string;
  describeNode(bin: string): { version: string; lts: string | null; openssl: string };
};
const { nodeSupportWarning } = (await import(join(ROOT, 'packaging/node-support.mjs'))) as {
  nodeSupportWarning(version: string, lts: string | undefined, openssl: string, today: string): string | null;
};

describe('make sea: the pinned Node.js', () => {
  it('pins, for x64 and arm64, an LTS line that still gets security fixes today (this fails on its end of life, to be bumped)', () => {
    for (const arch of ['x64', 'arm64']) {
      const pin = runtime.pinnedRuntime(arch);
      expect(pin.pkg).to.equal(`node-linux-${arch}`);
      expect(pin.integrity).to.match(/^sha512-[A-Za-z0-9+/]{86}==$/);
      expect(nodeSupportWarning(`v${pin.version}`, 'pinned', '-', new Date().toISOString().slice(0, 10)), arch).to.equal(null);
    }
  });

  it('says what to do for an architecture it pins no Node.js for', () => {
    expect(() => runtime.pinnedRuntime('s390x')).to.throw(
      /pins no Node\.js for s390x \(only x64, arm64\): add node-linux-s390x@[\d.]+'s integrity \(npm view node-linux-s390x@[\d.]+ dist\.integrity\), or build with SEA_NODE=\/path\/to\/node/,
    );
  });

  it('refuses a downloaded tarball whose checksum is not the pinned one, and deletes it so that the next build fetches it again', () => {
    const pin = runtime.pinnedRuntime('x64');
    const cache = tempDir('node-runtime');
    const tarball = join(cache, `${pin.pkg}-${pin.version}.tgz`);
    writeFileSync(tarball, 'not the release');
    const said: string[] = [];
    expect(() => runtime.pinnedNode(cache, (l) => said.push(l), 'x64')).to.throw(
      new RegExp(`^${pin.pkg}-${pin.version.replace(/\./g, '\\.')}\\.tgz has checksum sha512-\\S+, not the ${pin.integrity.replace(/[+/]/g, '\\$&')} that packaging/node-runtime.json pins: it is not the release pinned, so no binary is built on it`),
    );
    expect(existsSync(tarball)).to.equal(false);
    expect(existsSync(join(cache, `v${pin.version}-linux-x64`, 'node'))).to.equal(false);
    expect(said, 'nothing was fetched: the tarball was there').to.deep.equal([]);
  });

  it('unpacks the pinned release from its checked tarball into a node that runs and is that version, then reuses it', function () {
    const pin = runtime.pinnedRuntime();
    const fetched = join(ROOT, 'build/node-runtime', `${pin.pkg}-${pin.version}.tgz`);
    skipIf(this, existsSync(fetched) ? null : `${fetched} is not there (make sea fetches it)`);
    const cache = tempDir('node-runtime');
    copyFileSync(fetched, join(cache, `${pin.pkg}-${pin.version}.tgz`));
    const bin = runtime.pinnedNode(cache, () => undefined);
    expect(bin).to.equal(join(cache, `v${pin.version}-linux-${process.arch}`, 'node'));
    const node = runtime.describeNode(bin);
    expect(node.version).to.equal(`v${pin.version}`);
    expect(node.lts, 'an LTS release').to.be.a('string');
    // Reused: the tarball may go, the unpacked node stays.
    writeFileSync(join(cache, `${pin.pkg}-${pin.version}.tgz`), 'gone');
    expect(runtime.pinnedNode(cache, () => undefined)).to.equal(bin);
    expect(readFileSync(bin).subarray(0, 4).toString('latin1')).to.equal('\x7fELF');
  });

  it('runs the copy path\'s tests on the pinned node too: the daemon the binary carries reads accepted connections into pooled buffers', async function () {
    const pin = runtime.pinnedRuntime();
    const node = join(ROOT, 'build/node-runtime', `v${pin.version}-linux-${process.arch}`, 'node');
    skipIf(this, existsSync(node) ? null : `${node} is not there (make sea fetches it)`);
    // The suite runs on the machine's node; adoptAccepted reaches into net's internals, which a release may move.
    const r = await run(node, [join(ROOT, 'node_modules/mocha/bin/mocha.js'), '--exit', join(ROOT, 'build/js/test/unit/copy.test.js')], { timeoutMs: 60_000 });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.contain('reads an accepted connection into pooled buffers').and.match(/\d+ passing/).and.not.contain('failing');
  });
});
