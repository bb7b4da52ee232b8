import { expect } from 'chai';
import { PATHS, pathOrder } from '../bench/paths.js';

describe('bench path order', () => {
  it('runs every path once per round, each first, second and last once over three rounds', () => {
    const rounds = [1, 2, 3].map(pathOrder);
    expect(rounds[0]).to.deep.equal(['plain', 'stunnel', 'relay']);
    for (const order of rounds) expect([...order].sort()).to.deep.equal([...PATHS].sort());
    for (let pos = 0; pos < PATHS.length; pos++) expect(rounds.map((o) => o[pos]).sort()).to.deep.equal([...PATHS].sort());
    expect(pathOrder(4)).to.deep.equal(rounds[0]);
  });
});
