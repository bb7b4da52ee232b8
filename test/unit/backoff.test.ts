import { expect } from 'chai';
import { Backoff, Retry } from '../../daemon/backoff.js';
import { sleep, waitFor } from '../helpers/daemon.js';

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

describe('Retry', () => {
  it('tries again once per failure, after waits that grow while failures go on, and starts over after reset', async () => {
    let tries = 0;
    const r = new Retry(10, 40, () => tries++);
    expect(r.nextMs).to.equal(10);
    r.schedule();
    expect(r.nextMs, 'the wait after this one').to.equal(20);
    await waitFor('the try', () => tries === 1, 2_000);
    r.schedule();
    r.schedule(); // in place of the pending one: still one try
    expect(r.nextMs).to.equal(40);
    await waitFor('the second try', () => tries === 2, 2_000);
    await sleep(100);
    expect(tries, 'the replaced one made no try').to.equal(2);
    r.reset();
    expect(r.nextMs).to.equal(10);
  });

  it('makes no try once cancelled or reset, and cancelling keeps the waits growing', async () => {
    let tries = 0;
    const r = new Retry(10, 40, () => tries++);
    r.schedule();
    r.cancel();
    expect(r.nextMs, 'a cancel is no success').to.equal(20);
    r.schedule();
    r.reset();
    await sleep(80);
    expect(tries).to.equal(0);
  });
});
