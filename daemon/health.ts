// A tunnel's health, one verdict for /healthz and efsctl's HEALTH column:
// it listens, its latest handshake with the mount target was verified, and
// no mount of it hangs.
import type { HandshakeOutcome } from './relay.js';
import type { TunnelHealth, TunnelManager, TunnelView } from './tunnels.js';

export interface Problem {
  fs_id: string;
  code: string;
  message: string;
}

export interface HealthBody {
  status: 'ok' | 'failing';
  tunnels: number;
  failing: Problem[];
}

/**
 * The latest handshake with the mount target, a probe's or a client
 * connection's: a refusal after a passed probe is news at once, and with
 * probes off client connections are all there is.
 */
export function latestHandshake(h: TunnelHealth): HandshakeOutcome | null {
  const { probe, connection } = h;
  if (!probe || !connection) return probe ?? connection;
  return connection.at > probe.at ? connection : probe;
}

/** What is wrong with one tunnel now, most basic first. */
export function problems(t: TunnelView): Problem[] {
  const found: Problem[] = [];
  if (t.state !== 'listening') {
    found.push({ fs_id: t.fs_id, code: t.last_error?.code ?? 'LISTEN_FAILED', message: t.last_error?.message ?? `not listening on ${t.port}` });
  }
  const hs = latestHandshake(t.health);
  if (hs && !hs.ok) found.push({ fs_id: t.fs_id, code: hs.code ?? 'INTERNAL', message: hs.message ?? 'handshake failed' });
  for (const m of t.health.mounts_failing) found.push({ fs_id: t.fs_id, code: m.code, message: m.message });
  return found;
}

export function health(manager: TunnelManager): HealthBody {
  const tunnels = manager.list();
  const failing = tunnels.flatMap(problems);
  return { status: failing.length ? 'failing' : 'ok', tunnels: tunnels.length, failing };
}
