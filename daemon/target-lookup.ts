// Finding a mount target's address by its DNS name, for one tunnel.
//
// The system resolver (getaddrinfo, so /etc/hosts and nsswitch apply, as for
// efs-utils) is asked at every connection, as stunnel's `delay = yes` does.
// Three things are added for the NFS client that connects or reconnects:
// - One question at a time per name: a resolver that does not answer would
//   otherwise gather one stuck lookup per connection and probe in libuv's
//   queue, which runs only two at a time.
// - When DNS gives no answer (no reply in time, SERVFAIL, EAI_AGAIN) the
//   connection goes to the address of DNS's last answer. The certificate is
//   verified against the name as always, so the address only decides where
//   the handshake is tried. An answer that the name has no address (NXDOMAIN,
//   NODATA: the mount target was deleted) is final and forgets the last
//   answer, so that a later outage cannot revive an address DNS withdrew.
//   The last answer is kept in the tunnel's record (`changed`), so that a
//   daemon restarted while DNS is down still has it.
// - With no earlier answer, a connection waits for DNS until its own connect
//   timeout, and DNS is asked again every second meanwhile: a resolver that
//   is not up yet at boot fails at once, and answers a moment later.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import { RelayError } from './errors.js';

/** How long a connection waits for DNS before it takes the last answer, when there is one. */
const DNS_ANSWER_BUDGET_MS = 2_000;

/** How soon DNS is asked again after a temporary failure, for connections that have no earlier answer to go to. */
export const DNS_RETRY_MS = 1_000;

/** getaddrinfo's word that the name has no address: DNS answered, and the answer is no. */
const NO_ADDRESS: ReadonlySet<string> = new Set(['ENOTFOUND', 'ENODATA', 'EAI_NONAME', 'EAI_NODATA']);

/** Whether a lookup's error code is DNS's answer that `name` has no address (final), not a failure to answer. */
export function isNoAddress(code: string): boolean {
  return NO_ADDRESS.has(code);
}

/** What DNS's answer that the name has no address means, for the daemon and doctor alike. */
export function noAddressMessage(name: string, code: string): string {
  return `DNS has no address for ${name} (${code}): no file system or mount target of that name is known to DNS`;
}

type Callback = (err: Error | null, addresses: LookupAddress[]) => void;
/** net's `lookup` option, as net calls it: with `all` it wants every address, else the first. */
export type NetLookup = (hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => void;

/** What `efsctl status` shows of DNS for a target given by name. */
export interface DnsAnswer {
  addresses: string[];
  answered_at: string;
}

export interface LookupEvents {
  /** DNS gave no answer and a connection went to the address of its last answer (the error's message says which). */
  fallback(error: RelayError): void;
  /** DNS answered again after one or more fallbacks. */
  answered(address: string): void;
  /** The last answer's addresses changed, or it was forgotten (null: DNS says the name has none). */
  changed(answer: DnsAnswer | null): void;
}

export class TargetLookup {
  /** Connections and probes that went to the last answer because DNS gave none. */
  fallbacks = 0;
  private last: { addresses: LookupAddress[]; at: number; answeredAt: string } | null = null;
  private asking: { waiting: Waiter[] } | null = null;
  private fallingBack = false;
  private lastFailure: string | null = null;
  /** `last` is the answer an earlier run kept, not yet confirmed by DNS in this one. */
  private fromEarlierRun = false;

  /**
   * @param earlier DNS's last answer as an earlier run of the daemon kept it (the record's `dns_answer`, which
   * validateRecord let through only with IP addresses and a valid time): the fallback until DNS answers.
   */
  constructor(readonly name: string, private readonly events: LookupEvents, earlier?: DnsAnswer | null) {
    if (!earlier) return;
    const addresses = earlier.addresses.map((address) => ({ address, family: isIP(address) }));
    this.last = { addresses, at: performance.now() - Math.max(0, Date.now() - Date.parse(earlier.answered_at)), answeredAt: earlier.answered_at };
    this.fromEarlierRun = true;
  }

  /**
   * For net/tls.connect's `lookup` option. `answered` runs once this connection has its addresses or its error;
   * `wanted` says whether it still waits (its socket is not destroyed: its own timeout ends the wait).
   */
  netLookup(answered: () => void, wanted: () => boolean): NetLookup {
    return (_hostname, options, callback) => {
      const done: Callback = (err, addresses) => {
        answered();
        if (err) callback(err);
        else if (options.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      };
      const waiter: Waiter = { done, wanted, settled: false, budget: undefined };
      // With an earlier answer in hand, a slow DNS costs this connection at most the budget.
      if (this.last) waiter.budget = setTimeout(() => this.fallBack(waiter, `no answer within ${DNS_ANSWER_BUDGET_MS} ms`), DNS_ANSWER_BUDGET_MS);
      if (this.asking) this.asking.waiting.push(waiter);
      else this.ask([waiter]);
    };
  }

  /** DNS's last answer that connections go to (or fall back to), or null before the first and after NXDOMAIN. */
  get answer(): DnsAnswer | null {
    return this.last ? { addresses: this.last.addresses.map((a) => a.address), answered_at: this.last.answeredAt } : null;
  }

  /** The resolver's last temporary failure (EAI_AGAIN, …) since its last answer, or null. */
  get failure(): string | null {
    return this.lastFailure;
  }

  private ask(waiting: Waiter[]): void {
    const asking = { waiting };
    this.asking = asking;
    dnsLookup(this.name, { all: true }, (err, addresses) => {
      if (!err && addresses.length > 0) {
        this.asking = null;
        this.lastFailure = null;
        const before = this.last?.addresses.map((a) => a.address).join(' ');
        this.last = { addresses, at: performance.now(), answeredAt: new Date().toISOString() };
        // Kept when the addresses change, and once after a start, so the kept time is at most one run old.
        if (before !== addresses.map((a) => a.address).join(' ') || this.fromEarlierRun) this.events.changed(this.answer);
        this.fromEarlierRun = false;
        if (this.fallingBack) {
          this.fallingBack = false;
          this.events.answered(addresses[0]!.address);
        }
        for (const w of asking.waiting) settle(w, null, addresses);
        return;
      }
      const code = err?.code ?? 'ENODATA';
      if (isNoAddress(code)) {
        this.asking = null;
        this.lastFailure = null;
        const had = this.last !== null;
        this.last = null;
        if (had) this.events.changed(null);
        const e = new RelayError('DNS_FAILED', noAddressMessage(this.name, code), { cause: err, final: true });
        for (const w of asking.waiting) settle(w, e, []);
        return;
      }
      this.lastFailure = code;
      for (const w of asking.waiting) this.fallBack(w, code);
      // With no earlier answer, the connections wait on (until their own timeout) and DNS is asked again shortly: a
      // resolver that is still starting, as at boot, fails at once and answers a moment later. Newcomers join.
      const again = (): Waiter[] => asking.waiting.filter((w) => !w.settled && w.wanted());
      if (again().length === 0) {
        this.asking = null;
        return;
      }
      setTimeout(() => {
        const still = again();
        if (still.length > 0) this.ask(still);
        else this.asking = null;
      }, DNS_RETRY_MS);
    });
  }

  /** DNS gave no answer: the last answer if there is one; else the waiter goes on waiting. */
  private fallBack(waiter: Waiter, why: string): void {
    const last = this.last;
    if (waiter.settled || !last) return;
    if (!waiter.wanted()) return settle(waiter, null, []); // its connection is gone: nothing went anywhere
    const ageMs = performance.now() - last.at;
    const address = last.addresses[0]!.address;
    this.fallbacks++;
    this.fallingBack = true;
    const e = new RelayError('DNS_FAILED', `DNS gave no answer for ${this.name} (${why}); connecting to ${address}, its answer of ${Math.round(ageMs / 1000)} s ago. The certificate is still verified against ${this.name}`);
    this.events.fallback(e);
    settle(waiter, null, last.addresses);
  }
}

interface Waiter {
  done: Callback;
  wanted: () => boolean;
  settled: boolean;
  budget: NodeJS.Timeout | undefined;
}

/** Answer a waiter once; one whose connection is gone (timed out, closed by its client) is only dropped. */
function settle(w: Waiter, err: Error | null, addresses: LookupAddress[]): void {
  if (w.settled) return;
  w.settled = true;
  clearTimeout(w.budget);
  if (w.wanted()) w.done(err, addresses);
}
