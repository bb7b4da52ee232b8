// `make sea` copies the build machine's Node.js into the packaged binary; it warns when that Node gets no security fixes.
import { expect } from 'chai';
import { join } from 'node:path';
import { ROOT } from '../helpers/daemon.js';

type Warn = (version: string, lts: string | undefined, openssl: string, today: string) => string | null;
const { nodeSupportWarning } = (await import(join(ROOT, 'packaging/node-support.mjs'))) as { nodeSupportWarning: Warn };

describe('make sea: the Node.js the binary carries', () => {
  it('warns about an LTS line past its end of life, naming the version, its OpenSSL and the date', () => {
    expect(nodeSupportWarning('v20.20.2', 'Iron', '3.0.19', '2026-11-28')).to.equal(
      'the binary carries Node.js v20.20.2 (OpenSSL 3.0.19), whose line reached its end of life on 2026-04-30 and gets no security fixes; build releases with a Node.js LTS that is still supported',
    );
  });

  it('says nothing for a supported LTS line, up to its last day', () => {
    expect(nodeSupportWarning('v20.20.2', 'Iron', '3.0.19', '2026-04-30')).to.equal(null);
    expect(nodeSupportWarning('v24.21.0', 'Krypton', '3.5.8', '2026-11-28')).to.equal(null);
  });

  it('warns about a line that is not long-term support, and not about a newer LTS line it does not list yet', () => {
    expect(nodeSupportWarning('v25.2.0', undefined, '3.5.4', '2026-11-28')).to.match(/Node\.js v25\.2\.0 \(OpenSSL 3\.5\.4\), which is not a long-term-support line/);
    expect(nodeSupportWarning('v26.1.0', undefined, '3.5.9', '2026-05-20'), 'an even line before its LTS start').to.match(/not a long-term-support line/);
    expect(nodeSupportWarning('v28.1.0', 'Future', '4.0.0', '2029-01-01')).to.equal(null);
  });
});
