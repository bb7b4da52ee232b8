import { expect } from 'chai';
import { PATHS, pathOrder, startService, SERVICE_PORT } from '../bench/paths.js';
import { RpcConnection, switchesBetween, threadSwitches } from '../bench/workloads.js';

describe('bench path order', () => {
  it('runs every path once per round, each first, second and last once over three rounds', () => {
    const rounds = [1, 2, 3].map(pathOrder);
    expect(rounds[0]).to.deep.equal(['plain', 'stunnel', 'relay']);
    for (const order of rounds) expect([...order].sort()).to.deep.equal([...PATHS].sort());
    for (let pos = 0; pos < PATHS.length; pos++) expect(rounds.map((o) => o[pos]).sort()).to.deep.equal([...PATHS].sort());
    expect(pathOrder(4)).to.deep.equal(rounds[0]);
  });
});

describe('bench idle wakeups', () => {
  it('reads the context switches of every thread of a live process, the main thread included', () => {
    const counts = threadSwitches(process.pid);
    expect(counts.has(String(process.pid))).to.equal(true);
    for (const n of counts.values()) expect(n).to.be.at.least(0);
  });

  it('counts only threads alive at the second reading, so a thread that ended never makes the count negative', () => {
    const before = new Map([['100', 50], ['101', 7], ['102', 3]]);
    const after = new Map([['100', 52], ['103', 4]]); // 101 and 102 ended; 103 started
    expect(switchesBetween(before, after)).to.equal(2 + 4);
  });
});

describe('bench RPC turns', () => {
  it('adds the round trips of every turn on one connection into one p50/p99, up to the total it was opened for', async () => {
    const service = await startService();
    try {
      const c = await RpcConnection.open(SERVICE_PORT, 200, 30, null);
      await c.turn(10);
      expect(c.result().roundTrips).to.equal(10);
      await c.turn(10);
      await c.turn(50); // only 10 are left of the 30
      c.close();
      const l = c.result();
      expect(l.roundTrips).to.equal(30);
      expect(l.p50us).to.be.greaterThan(0);
      expect(l.p99us).to.be.at.least(l.p50us);
      expect(l.cpuUsPerRoundTrip, 'no tunnel process to measure on the plain path').to.equal(null);
    } finally {
      await service.stop();
    }
  });
});
