import { expect } from 'chai';
import { createLogger, formatLine } from '../../daemon/log.js';

describe('log lines', () => {
  const at = new Date('2026-11-27T01:02:03.456Z');

  it('writes time, level, event, fs id and error code on one line', () => {
    expect(formatLine('warn', 'tunnel.handshake_failed', { fs: 'fs-12345678', code: 'TLS_CERT_EXPIRED', msg: 'cert expired', port: 20049 }, at, false))
      .to.equal('2026-11-27T01:02:03.456Z warn tunnel.handshake_failed fs=fs-12345678 code=TLS_CERT_EXPIRED msg="cert expired" port=20049');
  });

  it('uses "-" when there is no fs id or code', () => {
    expect(formatLine('info', 'daemon.started', {}, at, false)).to.equal('2026-11-27T01:02:03.456Z info daemon.started fs=- code=-');
  });

  it('prefixes the systemd priority under journald', () => {
    expect(formatLine('error', 'x', {}, at, true)).to.match(/^<3>/);
    expect(formatLine('warn', 'x', {}, at, true)).to.match(/^<4>/);
    expect(formatLine('info', 'x', {}, at, true)).to.match(/^<6>/);
    expect(formatLine('debug', 'x', {}, at, true)).to.match(/^<7>/);
  });

  it('drops events below the configured level', () => {
    const lines: string[] = [];
    const log = createLogger('warn', (l) => lines.push(l), false);
    log.info('quiet');
    log.warn('loud');
    expect(lines).to.have.length(1);
    expect(lines[0]).to.contain(' warn loud ');
  });
});
