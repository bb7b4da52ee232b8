// Node's default for SIGHUP and SIGUSR2 ends the process, and every mount's
// tunnel with it. This module's listeners replace that default from the
// daemon's first lines (main.ts imports it right after the inspector guard),
// before the config is read. A signal that comes before the daemon can act on
// it (reload, or say it is ignored) waits until it can. Node resets every
// signal to its default as it starts, so nothing, not even a SIGHUP ignored by
// the parent, covers the few tens of ms before those lines.

type Held = 'SIGHUP' | 'SIGUSR2';
const actions = new Map<Held, () => void>();
const came = new Set<Held>(); // one action serves any number of signals before it

for (const signal of ['SIGHUP', 'SIGUSR2'] as const) {
  process.on(signal, () => {
    const act = actions.get(signal);
    if (act) act();
    else came.add(signal);
  });
}

/** What the signal does from now on; if it came before, that is done once, at once. */
export function onSignal(signal: Held, act: () => void): void {
  actions.set(signal, act);
  if (came.delete(signal)) act();
}
