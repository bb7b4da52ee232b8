import { expect } from 'chai';
import { firstProbeWindowMs } from '../../daemon/prober.js';

describe('first health probes', () => {
  it('start within a second for up to 100 new tunnels', () => {
    expect(firstProbeWindowMs(1, 30_000)).to.equal(1_000);
    expect(firstProbeWindowMs(100, 30_000)).to.equal(1_000);
  });

  it('spread at 100 a second when more arrive at once, as 1000 restored tunnels do at start-up', () => {
    expect(firstProbeWindowMs(1000, 30_000)).to.equal(10_000);
  });

  it('never wait longer than the probe interval', () => {
    expect(firstProbeWindowMs(10_000, 30_000)).to.equal(30_000);
    expect(firstProbeWindowMs(1, 500)).to.equal(500);
  });
});
