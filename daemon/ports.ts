// Local port choice. Like efs-utils, scan from a random point in the range,
// so a port freed a moment ago (which a stale mount may still name) is not
// systematically the next one handed out.
import { randomInt } from 'node:crypto';
import type { Config } from './config.js';
import { RelayError } from './errors.js';
import type { MountOptions } from './options.js';

/** The port a tlsport= option asks for (already checked to be an integer), or null; one outside port_range is refused. */
export function requestedPort(options: MountOptions, cfg: Config): number | null {
  if (options.tlsport === undefined || options.tlsport === null) return null;
  const port = Number(options.tlsport);
  const { first, last } = cfg.port_range;
  if (port < first || port > last) throw new RelayError('PORT_OUT_OF_RANGE', `tlsport ${port} is outside the configured port range ${first}-${last}`);
  return port;
}

/** Candidate ports in [first, last] not in `used`, from a random start, wrapping once. */
export function* pickPort(first: number, last: number, used: ReadonlySet<number>, start = randomInt(first, last + 1)): Generator<number> {
  const size = last - first + 1;
  for (let i = 0; i < size; i++) {
    const port = first + ((start - first + i) % size);
    if (!used.has(port)) yield port;
  }
}
