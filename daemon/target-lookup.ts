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
// - When DNS says the name has no address and the tunnel may fall back to
//   the EFS API (efs.mount_target_fallback, as efs-utils'
//   fall_back_to_mount_target_ip_address), connections go to the mount
//   target that DescribeMountTargets gives (mount-target-api.ts). That answer
//   is kept like DNS's, and used while DNS has no address, until DNS answers.
//   After a failed ask the API is not asked again for a while: an NFS client
//   reconnecting every few seconds would otherwise ask it each time.
// - With no earlier answer, a connection waits for DNS until its own connect
//   timeout, and DNS is asked again every second meanwhile: a resolver that
//   is not up yet at boot fails at once, and answers a moment later.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import { RelayError } from './errors.js';
import { NoMountTarget, type MountTarget } from './mount-target-api.js';

/** How long a connection waits for DNS before it takes the last answer, when there is one. */
const DNS_ANSWER_BUDGET_MS = 2_000;

/** How soon DNS is asked again after a temporary failure, for connections that have no earlier answer to go to. */
export const DNS_RETRY_MS = 1_000;

/** How long the failure of an ask of the EFS API stands for the connections that come meanwhile. */
const API_RETRY_MS = 30_000;

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
  /** Not DNS's answer but the EFS API's mount target, taken while DNS has no address for the name ("fsmt-… in use1-az1 (us-east-1a)"). */
  mount_target?: string;
}

/** Asks the EFS API for the mount target to connect to (NoMountTarget when it gives none). */
export type MountTargetFallback = () => Promise<MountTarget>;

export interface LookupEvents {
  /** DNS gave no answer and a connection went to the address of its last answer (the error's message says which). */
  fallback(error: RelayError): void;
  /** DNS answered again after one or more fallbacks. */
  answered(address: string): void;
  /** The last answer's addresses changed, or it was forgotten (null: DNS says the name has none). */
  changed(answer: DnsAnswer | null): void;
  /** Connections go to the EFS API's mount target, DNS having no address for the name: once, until DNS has one again. */
  fromApi(message: string): void;
}

export class TargetLookup {
  /** Connections and probes that went to the last answer because DNS gave none. */
  fallbacks = 0;
  private last: { addresses: LookupAddress[]; at: number; answeredAt: string; mountTarget?: string } | null = null;
  /** The EFS API's last failure to give a mount target, which stands for API_RETRY_MS. */
  private apiFailure: { at: number; error: RelayError } | null = null;
  /** fromApi was said since DNS last had an address. */
  private saidFromApi = false;
  private asking: { waiting: Waiter[] } | null = null;
  private fallingBack = false;
  private lastFailure: string | null = null;
  /** `last` is the answer an earlier run kept, not yet confirmed by DNS in this one. */
  private fromEarlierRun = false;

  /**
   * @param earlier DNS's last answer as an earlier run of the daemon kept it (the record's `dns_answer`, which
   * validateRecord let through only with IP addresses and a valid time): the fallback until DNS answers.
   */
  constructor(readonly name: string, private readonly events: LookupEvents, earlier?: DnsAnswer | null, private readonly fallback: MountTargetFallback | null = null) {
    if (!earlier) return;
    const addresses = earlier.addresses.map((address) => ({ address, family: isIP(address) }));
    this.last = { addresses, at: performance.now() - Math.max(0, Date.now() - Date.parse(earlier.answered_at)), answeredAt: earlier.answered_at };
    // A mount target the API gave an earlier run counts only while the tunnel may still fall back to it.
    if (earlier.mount_target !== undefined) {
      if (fallback) this.last.mountTarget = earlier.mount_target;
      else this.last = null;
    }
    this.fromEarlierRun = this.last !== null;
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
    if (!this.last) return null;
    const answer: DnsAnswer = { addresses: this.last.addresses.map((a) => a.address), answered_at: this.last.answeredAt };
    if (this.last.mountTarget !== undefined) answer.mount_target = this.last.mountTarget;
    return answer;
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
        this.apiFailure = null;
        this.saidFromApi = false;
        const before = this.last ? `${this.last.addresses.map((a) => a.address).join(' ')} ${this.last.mountTarget ?? 'dns'}` : undefined;
        this.last = { addresses, at: performance.now(), answeredAt: new Date().toISOString() };
        // Kept when the addresses (or where they came from) change, and once after a start, so the kept time is at most one run old.
        if (before !== `${addresses.map((a) => a.address).join(' ')} dns` || this.fromEarlierRun) this.events.changed(this.answer);
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
        this.lastFailure = null;
        const none = new RelayError('DNS_FAILED', noAddressMessage(this.name, code), { cause: err, final: true });
        if (this.fallback) return this.toApi(asking, none);
        this.asking = null;
        const had = this.last !== null;
        this.last = null;
        if (had) this.events.changed(null);
        for (const w of asking.waiting) settle(w, none, []);
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

  /**
   * DNS says the name has no address: the waiters go to the mount target the EFS API gave (kept from an earlier
   * ask, or asked now); DNS's own last answer is forgotten, as without the fallback.
   */
  private toApi(asking: { waiting: Waiter[] }, none: RelayError): void {
    const done = (answer: NonNullable<TargetLookup['last']> | null, error: RelayError | null): void => {
      this.asking = null;
      for (const w of asking.waiting) {
        if (answer) this.toMountTarget(w, answer, none);
        else settle(w, error, []);
      }
    };
    if (this.last?.mountTarget !== undefined) return done(this.last, null);
    if (this.last) {
      this.last = null;
      this.events.changed(null);
    }
    if (this.apiFailure && performance.now() - this.apiFailure.at < API_RETRY_MS) return done(null, this.apiFailure.error);
    (this.fallback as MountTargetFallback)().then((found) => {
      this.apiFailure = null;
      this.last = { addresses: [{ address: found.address, family: isIP(found.address) }], at: performance.now(), answeredAt: new Date().toISOString(), mountTarget: found.description };
      this.events.changed(this.answer);
      done(this.last, null);
    }, (err: unknown) => {
      const why = err instanceof Error ? err.message : String(err);
      const e = new RelayError('DNS_FAILED', `${none.message}; the EFS API gave no mount target to connect to instead: ${why}`, {
        cause: err, final: err instanceof NoMountTarget && err.answered,
      });
      this.apiFailure = { at: performance.now(), error: e };
      done(null, e);
    });
  }

  /**
   * A connection goes to the mount target the EFS API gave, DNS having no address for the name. Not a failure (a
   * VPC without DNS hostnames is always so, as efs-utils allows): said once, not counted among DNS's fallbacks.
   */
  private toMountTarget(waiter: Waiter, answer: NonNullable<TargetLookup['last']>, none: RelayError): void {
    if (waiter.settled) return;
    if (!waiter.wanted()) return settle(waiter, null, []);
    this.fallingBack = true;
    if (!this.saidFromApi) {
      this.saidFromApi = true;
      const address = answer.addresses[0]!.address;
      this.events.fromApi(`${none.message}; connecting to ${address}, ${answer.mountTarget ?? 'the mount target'} as the EFS API gave it (efs.mount_target_fallback). The certificate is still verified against ${this.name}`);
    }
    settle(waiter, null, answer.addresses);
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
    const whose = last.mountTarget === undefined ? 'its answer' : `${last.mountTarget}, the EFS API's answer`;
    const e = new RelayError('DNS_FAILED', `DNS gave no answer for ${this.name} (${why}); connecting to ${address}, ${whose} of ${Math.round(ageMs / 1000)} s ago. The certificate is still verified against ${this.name}`);
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
