// Node answers SIGUSR1 by opening its inspector on 127.0.0.1:9229, where any
// local user could run code inside this root process: a habit such as a
// logrotate script's `kill -USR1` would hand over the host. A listener of our
// own replaces Node's (Node 20 has no --disable-sigusr1). Every entry point
// imports this module first, so only Node's own start-up precedes it.
import { close as closeInspector, url as inspectorUrl } from 'node:inspector';

// Node catches SIGUSR1 itself from its first instruction until the line
// below; a signal in that window (or --inspect) opened the inspector already.
// Close it: the daemon never keeps one open.
const openedEarly = inspectorUrl();
if (openedEarly !== undefined) closeInspector();

let report: (() => void) | null = null;
let early = 0; // SIGUSR1s before there was a log to say so
process.on('SIGUSR1', () => {
  if (report) report();
  else early++;
});

/** What to do, besides nothing, when SIGUSR1 arrives (the daemon logs it once it has a logger); run at once for those that came before. */
export function onIgnoredSigusr1(fn: () => void): void {
  report = fn;
  for (; early > 0; early--) fn();
}

/** The inspector's address if it was open before this module ran (and has been closed since), else undefined. */
export function inspectorClosedAtStart(): string | undefined {
  return openedEarly;
}
