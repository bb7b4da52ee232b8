// The README is the user's manual: it must name every error code and every
// config key the code has.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
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

  it('shows make demo and make test in its first 40 lines', () => {
    const head = readme.split('\n').slice(0, 40).join('\n');
    expect(head).to.contain('make demo').and.contain('make test');
  });
});
