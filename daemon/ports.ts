// Local port choice. Like efs-utils, scan from a random point in the range,
// so a port freed a moment ago (which a stale mount may still name) is not
// systematically the next one handed out.
import { randomInt } from 'node:crypto';

/** Candidate ports in [first, last] not in `used`, from a random start, wrapping once. */
export function* pickPort(first: number, last: number, used: ReadonlySet<number>, start = randomInt(first, last + 1)): Generator<number> {
  const size = last - first + 1;
  for (let i = 0; i < size; i++) {
    const port = first + ((start - first + i) % size);
    if (!used.has(port)) yield port;
  }
}
