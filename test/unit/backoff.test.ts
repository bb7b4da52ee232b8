import { expect } from 'chai';
import { Backoff } from '../../daemon/backoff.js';

describe('Backoff', () => {
  it('doubles each wait up to the maximum, shows the next without taking it, and starts over after reset', () => {
    const b = new Backoff(5_000, 60_000);
    expect(b.nextMs).to.equal(5_000);
    expect([1, 2, 3, 4, 5, 6].map(() => b.take())).to.deep.equal([5_000, 10_000, 20_000, 40_000, 60_000, 60_000]);
    b.reset();
    expect(b.nextMs).to.equal(5_000);
    expect(b.take()).to.equal(5_000);
  });
});
