// The README is the user's manual: it must name every error code, config
// key, log event and daemon module the code has.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig } from '../../daemon/config.js';
import { ERRORS } from '../../daemon/errors.js';

const readme = readFileSync(join(import.meta.dirname, '../../../../README.md'), 'utf8');

function keys(obj: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(obj).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null ? keys(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`],
  );
}

describe('README', () => {
  it('lists every error code in the error code table', () => {
    const missing = Object.keys(ERRORS).filter((code) => !readme.includes(`| \`${code}\` |`));
    expect(missing).to.deep.equal([]);
  });

  it('documents every config key in the configuration table', () => {
    const missing = keys(defaultConfig() as unknown as Record<string, unknown>).filter((k) => !readme.includes(`| \`${k}\` |`));
    expect(missing).to.deep.equal([]);
  });

  it('gives each config key the default the daemon has', () => {
    const cfg = defaultConfig() as unknown as Record<string, unknown>;
    const valueOf = (key: string): unknown => key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], cfg);
    const documented = new Map([...readme.matchAll(/^\| `([a-z_.]+)` \| `((?:[^`\\]|\\.)*)` \|/gm)].map((m) => [m[1]!, m[2]!.replaceAll('\\|', '|')]));
    const shown = (v: unknown): string => (v === '' ? '""' : String(v));
    const wrong = keys(cfg)
      // The socket's default is written as it is derived from state_dir.
      .filter((k) => k !== 'control_socket')
      .filter((k) => documented.get(k) !== shown(valueOf(k)))
      .map((k) => `${k}: README ${documented.get(k) ?? '(no default)'}, daemon ${shown(valueOf(k))}`);
    expect(wrong).to.deep.equal([]);
    expect(documented.get('control_socket')).to.equal('<state_dir>/control.sock');
    expect(cfg.control_socket).to.equal(`${String(cfg.state_dir)}/control.sock`);
  });

  it('lists every log event the daemon writes in the Logs section', () => {
    const dir = join(import.meta.dirname, '../../../../daemon');
    const source = readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
    // Events are the literal first argument of a log call, or the last of a DirWatch (its watch errors).
    const events = new Set([
      ...[...source.matchAll(/\.(?:debug|info|warn|error)\(\s*'([a-z_]+\.[a-z0-9_]+)'/g)].map((m) => m[1]!),
      ...[...source.matchAll(/new DirWatch\([^;]*'([a-z_]+\.[a-z0-9_]+)'\)/g)].map((m) => m[1]!),
    ]);
    expect(events.size).to.be.above(30);
    const logs = readme.slice(readme.indexOf('\n## Logs'), readme.indexOf('\n## ', readme.indexOf('\n## Logs') + 1));
    expect([...events].filter((e) => !logs.includes(`\`${e}\``)).sort()).to.deep.equal([]);
  });

  it('names every daemon module in its layout', () => {
    const modules = readdirSync(join(import.meta.dirname, '../../../../daemon')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3));
    const layout = readme.slice(readme.indexOf('Layout: `daemon/`'), readme.indexOf('`cli/`', readme.indexOf('Layout: `daemon/`')));
    expect(modules.filter((m) => !layout.includes(`\`${m}\``)).sort()).to.deep.equal([]);
  });

  it('names, as the packages\' changelog does, the Node.js release that packaging/node-runtime.json pins for the binary', () => {
    const root = join(import.meta.dirname, '../../../..');
    const { version } = JSON.parse(readFileSync(join(root, 'packaging/node-runtime.json'), 'utf8')) as { version: string };
    const install = readme.slice(readme.indexOf('## Install'), readme.indexOf('## Running the daemon'));
    expect(install).to.contain(`(v${version}, OpenSSL`);
    expect(readFileSync(join(root, 'packaging/changelog'), 'utf8')).to.contain(`carries Node.js ${version} LTS`);
  });

  it('shows make demo and make test in its first 40 lines', () => {
    const head = readme.split('\n').slice(0, 40).join('\n');
    expect(head).to.contain('make demo').and.contain('make test');
  });
});
