// The set of tunnels: one record and one relay per file system. All changes
// go through one queue so concurrent requests never race for a port or make
// two relays for one file system.
import { hostname } from 'node:os';
import { asRelayError, RelayError, type ErrorCode } from './errors.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { Relay, type HandshakeOutcome, type LastError, type ProbeResult } from './relay.js';
import { StateStore, RECORD_VERSION, portsOf, type InvalidFile, type RecordSource, type TunnelRecord } from './state.js';
import { formatOptions, iamAuthorization, ocspChecking, tunnelOptions, type MountOptions } from './options.js';
import { OcspChecker } from './ocsp.js';
import { Namespaces } from './netns.js';
import { certificateName, isCrossAccount, joinHost, namedRegion, resolveTarget, type RegionEnv } from './target.js';
import { caFileFor, clientTrust, noTrust, policyTrust, readCaBundle, verifyLevel, type Trust } from './tls-policy.js';
import { ClientCertificates, type ClientCertView, type ClientPems, type ClientWant } from './client-cert.js';
import { awsCredentials, credentialPlaces } from './aws-credentials.js';
import type { TrustJudge } from './file-trust.js';
import type { MetadataAzId, RegionSource } from './instance-region.js';
import { pickPort, requestedPort } from './ports.js';
import type { UnencryptedMount } from './proc-mounts.js';
import { RateLimitedLog, ReportOnce } from './report-once.js';
import type { DnsAnswer, MountTargetFallback } from './target-lookup.js';
import { fallsBackToApi, findMountTarget } from './mount-target-api.js';
import type { EfsUtilsMount } from './efs-utils-configs.js';

const LISTEN_RETRY_MS = 5_000;
/** How often the client certificates of access point and IAM tunnels are looked at for renewal (client-cert.ts, RENEW_BELOW_MS). */
const RENEW_CHECK_MS = 10 * 60_000;
const HISTORY = 20;

export type TunnelState = 'listening' | 'error';

export interface HistoryEntry {
  at: string;
  event: string;
  dir?: string;
  code?: ErrorCode;
  message?: string;
}

export interface TunnelView {
  fs_id: string;
  port: number;
  /** Other ports it listens on, for mounts that name them (taken over from efs-utils); [] for most. */
  extra_ports: number[];
  /** The record's target, and the name its certificate must carry (certificateName). */
  target: TunnelRecord['target'] & { cert_name: string };
  state: TunnelState;
  source: RecordSource;
  created: string;
  options: MountOptions;
  mounts: string[];
  connections: { active: number; ok: number; failed: number };
  bytes: { upstream: number; downstream: number };
  last_error: LastError | null;
  last_connected_at: string | null;
  health: TunnelHealth;
  restarts: number;
  /** The client certificate its connections present (access point, IAM), or null when they present none. */
  client_certificate: ClientCertView | null;
  /** Its connections ask the OCSP responders of the mount target's chain (the ocsp option, or tls.ocsp). */
  ocsp: boolean;
  /** The network namespace it listens and connects in (netns=), or null for the daemon's own. */
  netns: string | null;
}

export interface MountCheck {
  dir: string;
  code: ErrorCode;
  message: string;
}

export interface TunnelHealth {
  /** false when health.probe_interval is 0: no probe ever comes. */
  probing: boolean;
  /** The last health probe, or null before the first one. */
  probe: ProbeResult | null;
  /** The handshake of the latest client connection, or null before the first one. */
  connection: HandshakeOutcome | null;
  /** Mounted directories whose stat failed or hung at the last check. */
  mounts_failing: MountCheck[];
}

export interface TunnelDetail extends TunnelView {
  /** For a target given by name, DNS's last answer (null before the first); absent under mounttargetip=. */
  dns?: DnsAnswer | null;
  unencrypted_mounts: UnencryptedMount[];
  handshake_failures: Partial<Record<ErrorCode, number>>;
  /** Established sessions that a TLS error ended, by code. */
  session_failures: Partial<Record<ErrorCode, number>>;
  history: HistoryEntry[];
}

/** What to do when a request asks an existing tunnel for another port, target or CA bundle (the code's own hint is about the option itself). */
const RUNNING_TUNNEL_HINT = 'A running tunnel keeps its port, target and CA bundle: leave those options out to use it as it is (`efsctl status FS_ID` shows them), or unmount the file system, `efsctl stop FS_ID`, and add it again.';

/** A request names a running tunnel as another one: `differs` says how, without the advice to stop it first. */
class RunningTunnelDiffers extends RelayError {
  constructor(code: ErrorCode, readonly differs: string, advice: string) {
    super(code, `${differs}; ${advice}`, { hint: RUNNING_TUNNEL_HINT });
  }
}

export interface AddRequest {
  fsId: string;
  options: MountOptions;
  env: RegionEnv;
  source: RecordSource;
  /** This instance's availability zone ID, for crossaccount options: asked before the request queues (withAzId). */
  azId?: MetadataAzId;
}

export interface AddResult {
  tunnel: TunnelView;
  created: boolean;
}

class Tunnel {
  record: TunnelRecord;
  relay: Relay;
  listenError: LastError | null = null;
  retryTimer: NodeJS.Timeout | null = null;
  /** Retries extra ports that could not be listened on yet. */
  extraRetryTimer: NodeJS.Timeout | null = null;
  /** Extra ports that could not be listened on (said once each), and the latest such failure. */
  readonly extraFailing = new Set<number>();
  extraError: LastError | null = null;
  history: HistoryEntry[] = [];
  probe: ProbeResult | null = null;
  mountsFailing: MountCheck[] = [];
  restarts = 0;

  /**
   * @param probing whether probes run now (health.probe_interval can change at a config reload).
   * @param clientCert the client certificate its connections present now.
   */
  constructor(record: TunnelRecord, relay: Relay, private readonly probing: () => boolean, private readonly clientCert: () => ClientCertView | null) {
    this.record = record;
    this.relay = relay;
  }

  note(event: string, err?: { code: ErrorCode; message: string }, dir?: string): void {
    this.history.push({
      at: new Date().toISOString(), event, ...(err ? { code: err.code, message: err.message } : {}), ...(dir ? { dir } : {}),
    });
    if (this.history.length > HISTORY) this.history.shift();
  }

  view(): TunnelView {
    const { record, relay } = this;
    const c = relay.counters;
    return {
      fs_id: record.fs_id,
      port: record.port,
      extra_ports: record.extra_ports ?? [],
      target: {
        dns_name: record.target.dns_name,
        cert_name: certificateName(record.fs_id, record.target.dns_name),
        address: record.target.address,
        port: record.target.port,
        region: record.target.region,
      },
      // An extra port that does not listen fails the mounts that name it as surely as the tunnel's own.
      state: relay.listening && (record.extra_ports ?? []).every((p) => relay.extraPorts.includes(p)) ? 'listening' : 'error',
      source: record.source,
      created: record.created,
      options: record.options,
      mounts: record.mounts,
      connections: { active: c.connectionsActive, ok: c.connectionsOk, failed: c.connectionsFailed },
      bytes: { upstream: c.bytesUpstream, downstream: c.bytesDownstream },
      last_error: latest(latest(this.listenError, relay.lastError), this.extraError),
      last_connected_at: relay.lastConnectedAt,
      health: { probing: this.probing(), probe: this.probe, connection: relay.lastHandshake, mounts_failing: this.mountsFailing },
      restarts: this.restarts,
      client_certificate: this.clientCert(),
      ocsp: Boolean(relay.spec.ocsp),
      netns: record.options.netns ?? null,
    };
  }
}

/** A tunnel that start() could not make yet, for want of a usable CA bundle or of an IAM tunnel's credentials: its own retry makes it. */
function waitingToStart(t: Tunnel): boolean {
  return t.listenError?.code === 'CA_BUNDLE_UNREADABLE' || t.listenError?.code === 'NO_AWS_CREDENTIALS';
}

/** Same port, target and options: a running tunnel can keep serving this record (its extra ports follow it: syncExtraPorts). */
function sameTunnel(a: TunnelRecord, b: TunnelRecord): boolean {
  return a.port === b.port && JSON.stringify(a.target) === JSON.stringify(b.target) && JSON.stringify(a.options) === JSON.stringify(b.options);
}

function latest(a: LastError | null, b: LastError | null): LastError | null {
  if (!a) return b;
  if (!b) return a;
  return a.at >= b.at ? a : b;
}

export class TunnelManager {
  private readonly tunnels = new Map<string, Tunnel>();
  /** One TLS context per CA bundle file (with the text it was built from), shared by the bundle's tunnels. */
  private readonly contexts = new Map<string, Promise<{ pem: string; trust: Trust }>>();
  private readonly caBundleListeners: Array<(file: string) => void> = [];
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Attaches in flight per fs: their tunnel must not be stopped under them. */
  private readonly claims = new Map<string, number>();
  /** File systems that fstab lines (without noauto) want ready, with the line's options. */
  private fstabWanted = new Map<string, AddRequest>();
  /** Invalid state files already logged (file + reason), so a rescan does not repeat them. */
  private readonly reportedInvalid = new ReportOnce();
  invalidStateFiles = 0;
  /** Of those, files in left-mounted/ (read once, at start). */
  private invalidLeftFiles = 0;
  /** NFS mounts of EFS that bypass every tunnel, as the mount watcher last saw them. */
  unencrypted: UnencryptedMount[] = [];
  /**
   * Local ports that NFS mounts name, as the mount watcher last saw them. A
   * mount left behind by `stop --force` still names its old port; a new
   * tunnel for another file system on that port would carry the old mount's
   * reconnects to the wrong file system, so no tunnel for another file
   * system is given one (that file system's own gets it back: leftMounted).
   */
  private mountedPorts: ReadonlySet<number> = new Set();
  /**
   * Port → file system, for tunnels stopped with --force while mounted: a new
   * tunnel for that file system gets the port back. Kept in the state dir,
   * so that a restarted daemon still knows (and, before its first read of the
   * mount list, still avoids) these ports.
   */
  private readonly leftMounted = new Map<number, string>();
  /**
   * Port → an efs-utils mount through it, with the file system its config names, as the mount watcher last saw
   * them. A tunnel of another file system does not listen on such a port: the mount's NFS client reconnects there,
   * and would reach the wrong file system the moment its stunnel let go (a crash, a restart by efs-utils' watchdog).
   */
  private efsUtilsOn = new Map<number, EfsUtilsMount[]>();
  private readonly relayListeners: Array<(fsId: string, relay: Relay) => void> = [];
  /** Listener restarts per fs in this daemon's life (a replaced Tunnel object keeps the count). */
  private readonly restartCount = new Map<string, number>();
  /** The client certificates of access point and IAM tunnels, and the one each tunnel presents now (renewed by renewTimer). */
  private readonly clientCerts = new ClientCertificates(hostname());
  /** One for every tunnel with `ocsp`: the tunnels of a region share their mount targets' intermediate CA, and its answer. */
  private readonly ocsp = new OcspChecker();
  /** The helpers of the network namespaces that netns= tunnels are in (netns.ts). */
  private readonly namespaces = new Namespaces((path, why) => this.log.warn('netns.helper_ended', { code: 'NETNS_FAILED', msg: why, netns: path }));
  private readonly presented = new Map<string, ClientPems>();
  private renewTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly store: StateStore,
    private readonly log: Logger,
    private readonly region: RegionSource,
    /** Judges each CA bundle as it is read (TrustWatcher). */
    private readonly trust: TrustJudge,
  ) {}

  /** Run one change at a time, in arrival order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Start every stored record on its own port. Returns how many files were invalid. */
  async restore(): Promise<number> {
    const { left, invalid } = await this.store.loadLeftMounts();
    for (const l of left) this.leftMounted.set(l.port, l.fs_id);
    for (const bad of invalid) this.logInvalid(bad);
    this.invalidLeftFiles = invalid.length;
    return this.syncFromDisk('restored');
  }

  private logInvalid(bad: InvalidFile): void {
    this.log.warn('state.file_invalid', { code: 'STATE_FILE_INVALID', msg: `${bad.file}: ${bad.reason}; skipped (not deleted)` });
  }

  /**
   * The mount watcher's latest reading: the local ports NFS mounts name. A
   * left-behind port that no mount names any more is forgotten.
   */
  async setMountedPorts(ports: ReadonlySet<number>): Promise<void> {
    this.mountedPorts = ports;
    for (const port of [...this.leftMounted.keys()]) {
      if (!ports.has(port)) await this.forgetLeftMount(port);
    }
  }

  /** The mount watcher's latest reading of efs-utils' mounts through local ports. */
  setEfsUtilsMounts(mounts: readonly EfsUtilsMount[]): void {
    this.efsUtilsOn = new Map();
    for (const m of mounts) this.efsUtilsOn.set(m.port, [...(this.efsUtilsOn.get(m.port) ?? []), m]);
  }

  /**
   * Every listen of a tunnel's: its own port (`port` omitted) or an extra one. Refused (PORT_CLAIMED) where an
   * efs-utils mount of another file system than the relay's goes through the port.
   */
  private async listen(relay: Relay, port?: number): Promise<void> {
    const { fsId } = relay.spec;
    const at = port ?? relay.spec.port;
    const m = this.efsUtilsOn.get(at)?.find((other) => other.fs_id !== fsId);
    if (m !== undefined) {
      throw new RelayError('PORT_CLAIMED', `Port ${at} is the port of ${m.fs_id}'s efs-utils mount at ${m.dir} (${m.file}); ${fsId}'s tunnel does not listen there while that mount is listed, or its NFS client's reconnects would reach ${fsId}'s mount target`);
    }
    await (port === undefined ? relay.listen() : relay.listenAlso(port));
  }

  /** Ports that mounts name (now, or as left behind by a forced stop): given to no other file system. */
  private heldPorts(): Set<number> {
    return new Set([...this.mountedPorts, ...this.leftMounted.keys()]);
  }

  /** Every local port a tunnel listens on (or retries): their own and their extra ones. */
  private portsInUse(): Set<number> {
    return new Set([...this.tunnels.values()].flatMap((t) => portsOf(t.record)));
  }

  /** The tunnel that holds `port`, as its own or an extra one. */
  private holderOf(port: number): Tunnel | undefined {
    for (const t of this.tunnels.values()) if (portsOf(t.record).includes(port)) return t;
    return undefined;
  }

  /** Ports of port_range that mounts name but no tunnel holds. */
  portsHeldByMounts(): number {
    const { first, last } = this.cfg.port_range;
    const used = this.portsInUse();
    return [...this.heldPorts()].filter((p) => p >= first && p <= last && !used.has(p)).length;
  }

  private async forgetLeftMount(port: number): Promise<void> {
    try {
      await this.store.removeLeftMount(port);
    } catch (err) {
      this.log.warn('state.write_failed', { code: 'STATE_WRITE_FAILED', msg: `cannot remove ${this.store.leftFileFor(port)}: ${(err as Error).message}` });
    }
    // Only now, so that whoever sees the port free (a scrape, an add) finds its file gone too.
    this.leftMounted.delete(port);
  }

  /**
   * Make the running tunnels match the records on disk: start new records,
   * stop tunnels whose record was removed, restart changed ones. Our own
   * writes are no-ops here, because the file equals the record in memory.
   */
  syncFromDisk(why: 'restored' | 'adopted' = 'adopted'): Promise<number> {
    return this.serial(async () => {
      const { records, invalid } = await this.store.loadAll();
      this.invalidStateFiles = invalid.length + this.invalidLeftFiles;
      const key = (bad: { file: string; reason: string }): string => `${bad.file}\0${bad.reason}`;
      const fresh = this.reportedInvalid.fresh(invalid.map(key));
      for (const bad of invalid) {
        if (fresh.has(key(bad))) this.logInvalid(bad);
      }

      const onDisk = new Map(records.map((r) => [r.fs_id, r]));
      for (const t of [...this.tunnels.values()]) {
        const rec = onDisk.get(t.record.fs_id);
        if (!rec) {
          if (this.claims.get(t.record.fs_id)) continue; // being created right now
          await this.remove(t, 'its record was removed from the state dir', false);
        } else if (!sameTunnel(rec, t.record)) {
          this.untrack(t);
          await t.relay.close();
          await this.start(rec, 'restarted');
        } else if (JSON.stringify([rec.mounts, rec.extra_ports]) !== JSON.stringify([t.record.mounts, t.record.extra_ports])) {
          t.record = rec;
          await this.syncExtraPorts(t);
        }
      }
      const taken = this.portsInUse();
      for (const rec of records) {
        if (this.tunnels.has(rec.fs_id)) continue;
        const clash = portsOf(rec).find((p) => taken.has(p));
        if (clash !== undefined) {
          this.log.warn('state.file_invalid', { fs: rec.fs_id, code: 'STATE_FILE_INVALID', msg: `${this.store.fileFor(rec.fs_id)}: port ${clash} is already used by another tunnel; skipped (not deleted)` });
          continue;
        }
        for (const p of portsOf(rec)) taken.add(p);
        await this.start(rec, why);
      }
      return this.invalidStateFiles;
    });
  }

  list(): TunnelView[] {
    return [...this.tunnels.values()].map((t) => t.view()).sort((a, b) => a.fs_id.localeCompare(b.fs_id));
  }

  status(fsId: string): TunnelDetail {
    const t = this.get(fsId);
    const byCode = (counts: Map<ErrorCode, number>): Partial<Record<ErrorCode, number>> => Object.fromEntries(counts);
    const { handshakeFailures, sessionFailures } = t.relay.counters;
    const dns = t.relay.dnsAnswer;
    return {
      ...t.view(), ...(dns === undefined ? {} : { dns }),
      handshake_failures: byCode(handshakeFailures), session_failures: byCode(sessionFailures), history: [...t.history],
      unencrypted_mounts: this.unencrypted.filter((u) => u.fs_id === fsId),
    };
  }

  /** Call `fn` for every relay, now and whenever one is made (metrics observe handshakes this way). */
  onRelay(fn: (fsId: string, relay: Relay) => void): void {
    this.relayListeners.push(fn);
    for (const [fsId, t] of this.tunnels) fn(fsId, t.relay);
  }

  /** Call `fn` with every CA bundle file a tunnel verifies with, now and whenever another comes into use (main.ts watches them). */
  onCaBundle(fn: (file: string) => void): void {
    this.caBundleListeners.push(fn);
    for (const file of this.contexts.keys()) fn(file);
  }

  /**
   * A CA bundle changed on disk: its tunnels' new connections and probes
   * verify against what it holds now, and open connections carry on. A
   * bundle that cannot be used (missing, half written, no certificate) is not
   * taken: its tunnels keep the trust they had, and the error says why (the
   * CA bundle watcher logs it and reads the file again).
   */
  reloadCaBundle(file: string): Promise<RelayError | null> {
    return this.serial(async () => {
      const current = this.contexts.get(file);
      if (!current || this.closed) return null;
      const before = await current.catch(() => null);
      let read;
      try {
        read = await readCaBundle(file);
      } catch (err) {
        return asRelayError(err);
      }
      if (before?.pem === read.pem) return null;
      await this.trust.atRead(file, 'CA bundle');
      const trust = policyTrust(read.pem, read.certificates, this.cfg.tls.max_version);
      this.contexts.set(file, Promise.resolve({ pem: read.pem, trust }));
      let tunnels = 0;
      for (const t of this.tunnels.values()) {
        // A tunnel still waiting for a readable bundle (or for credentials, with no certificate yet) picks it up on its own retry.
        if (waitingToStart(t) || caFileFor(t.record.options, this.cfg) !== file) continue;
        t.relay.useContext(await this.tunnelTrust(t.record, true));
        t.note('ca_reloaded');
        tunnels++;
      }
      this.log.info('tls.ca_reloaded', {
        file, certificates: read.certificates.length, tunnels,
        msg: 'new connections and probes verify against the bundle as it is now; open connections keep their verified sessions',
      });
      return null;
    });
  }

  /**
   * Every tunnel's state record, unsorted and without counters, for what runs
   * every second or every probe. list() builds a full view of each tunnel and
   * sorts them: called that often with 1000 tunnels, it was a sixth of the
   * daemon's CPU while probing (README, Performance).
   */
  records(): Readonly<TunnelRecord>[] {
    return [...this.tunnels.values()].map((t) => t.record);
  }

  /** One tunnel's state record; undefined once the tunnel is gone. */
  record(fsId: string): Readonly<TunnelRecord> | undefined {
    return this.tunnels.get(fsId)?.record;
  }

  /** One tunnel as list() shows it, or null when there is none. */
  view(fsId: string): TunnelView | null {
    return this.tunnels.get(fsId)?.view() ?? null;
  }

  /** One tunnel's relay; undefined once the tunnel is gone. */
  relay(fsId: string): Relay | undefined {
    return this.tunnels.get(fsId)?.relay;
  }

  /** The relays, for whoever reads counters (metrics). */
  relays(): ReadonlyMap<string, Relay> {
    return new Map([...this.tunnels].map(([id, t]) => [id, t.relay]));
  }

  /** Start (or return) the tunnel. With `claim`, the caller holds it until release(): nothing stops it meanwhile. */
  async add(req: AddRequest, claim = false): Promise<AddResult> {
    // Outside the queue: an ask of instance metadata may take seconds, and other requests need not wait for it.
    if (!namedRegion(req.options, req.env, this.cfg)) await this.region.askAgainIfUnanswered();
    req = await this.withAzId(req);
    return this.serial(async () => {
      // A helper started for a tunnel that did not come about (the namespace has no free port) does not linger.
      const result = await this.addLocked(req).finally(() => req.options.netns && this.keepUsedNamespaces());
      if (claim) this.claims.set(req.fsId, (this.claims.get(req.fsId) ?? 0) + 1);
      return result;
    });
  }

  /**
   * The request with this instance's availability zone ID when its options are crossaccount. Asked outside the
   * queue, as the region is: instance metadata may take seconds.
   */
  private async withAzId(req: AddRequest): Promise<AddRequest> {
    return req.azId === undefined && isCrossAccount(req.options) ? { ...req, azId: await this.region.azId() } : req;
  }

  private async addLocked(req: AddRequest): Promise<AddResult> {
    const options = tunnelOptions(req.options);
    const target = resolveTarget(req.fsId, options, req.env, this.cfg, this.region.current, req.azId);
    const wantPort = requestedPort(options, this.cfg);
    const { first, last } = this.cfg.port_range;

    const existing = this.tunnels.get(req.fsId);
    if (existing) {
      const rec = existing.record;
      if (wantPort !== null && !portsOf(rec).includes(wantPort)) {
        // A mount names that port and nothing serves it (its tunnel was stopped, or an efs-utils stunnel died): the
        // user says the mount is of this file system, so its tunnel listens there too rather than move.
        if (this.mountedPorts.has(wantPort)) return this.addPortLocked(existing, options, target, wantPort);
        throw new RunningTunnelDiffers('PORT_TAKEN', `${req.fsId} already has a tunnel on port ${rec.port}`, `stop it first to move it to ${wantPort}`);
      }
      this.checkSameTarget(existing, options, target);
      return { tunnel: existing.view(), created: false };
    }

    const used = this.portsInUse();
    if (wantPort !== null && used.has(wantPort)) {
      const owner = this.holderOf(wantPort)?.record.fs_id;
      throw new RelayError('PORT_TAKEN', `Port ${wantPort} is already used by the tunnel for ${owner}`);
    }
    const record: TunnelRecord = {
      version: RECORD_VERSION,
      fs_id: req.fsId,
      port: 0,
      target: { dns_name: target.dnsName, address: target.address, port: target.port, region: target.region },
      options,
      created: new Date().toISOString(),
      source: req.source,
      mounts: [],
    };
    const trust = await this.tunnelTrust(record);
    // Ports that mounts of this file system still name after its tunnel was force-stopped: the first becomes its
    // own port (unless tlsport= names one), the others come back as extra ports.
    const left = this.portsLeftMounted(req.fsId, used, first, last);
    // A port the user asks for (tlsport=) is theirs to reuse; a picked one avoids mounted ports too, except
    // the port of this file system's own mount left behind by stop --force, which it gets back first.
    const candidates = wantPort !== null
      ? [wantPort]
      : [...left.slice(0, 1), ...pickPort(first, last, new Set([...used, ...this.heldPorts()]))];
    for (const port of candidates) {
      const relay = this.makeRelay({ ...record, port }, trust);
      try {
        await this.listen(relay);
      } catch (err) {
        // Someone outside the daemon holds this port, or its mount: try the next one, unless the user asked for it.
        if (err instanceof RelayError && (err.code === 'PORT_TAKEN' || err.code === 'PORT_CLAIMED') && wantPort === null) continue;
        throw err;
      }
      record.port = port;
      const extra: number[] = [];
      for (const other of left) {
        // One that another process holds stays remembered for the file system, not waited for: that process may be
        // a tunnel of another file system's mount (efs-utils picks ports without asking us), whose reconnects the
        // port would carry here the moment it let go. `efsctl add FS -o tlsport=N` takes it once it is free.
        if (other !== port && (await this.listen(relay, other).then(() => true, () => false))) extra.push(other);
      }
      if (extra.length > 0) record.extra_ports = extra;
      try {
        await this.store.write(record);
      } catch (err) {
        await relay.close();
        throw err; // STATE_WRITE_FAILED, naming the file
      }
      // Its own ports back.
      for (const p of [port, ...extra]) if (this.leftMounted.get(p) === req.fsId) await this.forgetLeftMount(p);
      const t = this.track(record, relay);
      t.note('listening');
      this.log.info('tunnel.started', {
        fs: record.fs_id, port, target: joinHost(target.address, target.port), sni: target.certName,
        options: formatOptions(options) || undefined,
      });
      return { tunnel: t.view(), created: true };
    }
    const byMounts = this.portsHeldByMounts();
    throw new RelayError('PORTS_EXHAUSTED', `Every port in ${first}-${last} is in use${byMounts ? ` (${byMounts} by mounts whose tunnel was stopped; unmount them to free their ports)` : ''}`);
  }

  /** A request for a running tunnel must name its target and CA bundle, never silently another. */
  private checkSameTarget(t: Tunnel, options: MountOptions, target: { address: string; dnsName: string }): void {
    const rec = t.record;
    if (rec.target.address !== target.address || rec.target.dns_name !== target.dnsName) {
      throw new RunningTunnelDiffers('BAD_OPTION', `${rec.fs_id} already has a tunnel to ${rec.target.address} (${rec.target.dns_name})`, 'stop it first to change its target');
    }
    const [has, asked] = [rec.options, options].map((o) => caFileFor(o, this.cfg));
    if (has !== asked) {
      throw new RunningTunnelDiffers('BAD_OPTION', `${rec.fs_id} already has a tunnel that verifies against ${has}, not ${asked}`, 'stop it first to change its CA bundle');
    }
    const [hasNs, askedNs] = [rec.options.netns, options.netns];
    if (hasNs !== askedNs) {
      const where = (ns: string | null | undefined): string => (ns ? `in network namespace ${ns}` : 'in the daemon\'s own network namespace');
      throw new RunningTunnelDiffers('BAD_OPTION', `${rec.fs_id} already has a tunnel ${where(hasNs)}, not ${where(askedNs)}`,
        'a file system has one tunnel, and it listens and connects in one namespace: mount it from that namespace, or stop it first');
    }
    const [hasLevel, askedLevel] = [rec.options, options].map(verifyLevel);
    if (hasLevel !== askedLevel) {
      throw new RunningTunnelDiffers('BAD_OPTION', `${rec.fs_id} already has a tunnel that verifies with verify=${hasLevel}, not verify=${askedLevel}`, 'stop it first to change how it verifies');
    }
    const [hasOcsp, askedOcsp] = [rec.options, options].map((o) => ocspChecking(o, this.cfg.tls.ocsp));
    if (hasOcsp !== askedOcsp) {
      const [has, asked] = hasOcsp === 'ocsp' ? ['asks OCSP responders (ocsp)', 'one that does not (noocsp)'] : ['does not ask OCSP responders (noocsp, the default)', 'one that asks them (ocsp)'];
      throw new RunningTunnelDiffers('BAD_OPTION', `${rec.fs_id} already has a tunnel that ${has}, not ${asked}`, 'give every mount of the file system the same ocsp or noocsp, or stop it first to change how it verifies');
    }
    // The access point is in the tunnel's client certificate: every connection of the tunnel reaches that one.
    const [hasAp, askedAp] = [rec.options.accesspoint ?? null, options.accesspoint ?? null];
    if (hasAp !== askedAp) {
      const what = (ap: string | null): string => (ap === null ? 'no access point' : `access point ${ap}`);
      throw new RunningTunnelDiffers('BAD_OPTION', `${rec.fs_id} already has a tunnel for ${what(hasAp)}, not ${what(askedAp)}`,
        'a file system has one tunnel, and the mount target takes the access point from its client certificate, so its mounts all use the same one: unmount the others, or stop it first');
    }
    // So is IAM authorization, signed with the credentials these options find.
    const [hasIam, askedIam] = [rec.options, options].map(iamAuthorization);
    if (hasIam !== askedIam) {
      throw new RunningTunnelDiffers('BAD_OPTION', `${rec.fs_id} already has a tunnel ${hasIam}, not ${askedIam}`,
        'a file system has one tunnel, and its client certificate carries IAM authorization or not, for all of its mounts: give every mount of it the same iam, awsprofile and awscredsuri, or stop it first');
    }
  }

  /**
   * The running tunnel of a file system listens on port tlsport= too, as an extra port (`efsctl takeover` of a
   * second efs-utils mount of it, which names that port). The other options must describe the tunnel as it is.
   */
  async addPort(req: AddRequest): Promise<AddResult> {
    req = await this.withAzId(req);
    return this.serial(async () => {
      const options = tunnelOptions(req.options);
      const port = requestedPort(options, this.cfg);
      if (port === null) throw new RelayError('BAD_OPTION', 'An extra port is named with tlsport=PORT');
      const t = this.get(req.fsId);
      if (portsOf(t.record).includes(port)) return { tunnel: t.view(), created: false };
      return this.addPortLocked(t, options, resolveTarget(req.fsId, options, req.env, this.cfg, this.region.current, req.azId), port);
    });
  }

  private async addPortLocked(t: Tunnel, options: MountOptions, target: { address: string; dnsName: string }, port: number): Promise<AddResult> {
    const fsId = t.record.fs_id;
    this.checkSameTarget(t, options, target);
    const holder = this.holderOf(port);
    if (holder) throw new RelayError('PORT_TAKEN', `Port ${port} is already used by the tunnel for ${holder.record.fs_id}`);
    const left = this.leftMounted.get(port);
    if (left !== undefined && left !== fsId) {
      throw new RelayError('PORT_TAKEN', `Port ${port} is named by mounts of ${left}, whose tunnel was stopped; it is given to no other file system`);
    }
    await this.listen(t.relay, port);
    const next = { ...t.record, extra_ports: [...(t.record.extra_ports ?? []), port] };
    try {
      await this.store.write(next);
    } catch (err) {
      await t.relay.closeAlso(port);
      throw err; // STATE_WRITE_FAILED, naming the file
    }
    t.record = next;
    if (left === fsId) await this.forgetLeftMount(port);
    t.note('port_added');
    this.log.info('tunnel.port_added', { fs: fsId, port, msg: `also listens on port ${port}, for the mounts that name it; the port goes once no mount does` });
    return { tunnel: t.view(), created: false };
  }

  /** No mount has named an extra port for a while (the mount watcher's unmount rules): stop listening on it. */
  releasePort(fsId: string, port: number, why: string): Promise<void> {
    return this.serial(async () => {
      const t = this.tunnels.get(fsId);
      if (!t || !(t.record.extra_ports ?? []).includes(port) || this.mountedPorts.has(port)) return;
      const rest = (t.record.extra_ports ?? []).filter((p) => p !== port);
      const next: TunnelRecord = { ...t.record, extra_ports: rest };
      if (rest.length === 0) delete next.extra_ports;
      await this.store.write(next); // as in recordMount: changed in memory only once on disk
      t.record = next;
      await t.relay.closeAlso(port);
      t.note('port_released');
      this.log.info('tunnel.port_released', { fs: fsId, port, msg: why });
    });
  }

  /**
   * Make the relay listen on exactly the record's extra ports, once it listens on its own. One that cannot be
   * listened on yet (another process holds it) is said once and tried again every few seconds.
   */
  private async syncExtraPorts(t: Tunnel): Promise<void> {
    if (t.extraRetryTimer) clearTimeout(t.extraRetryTimer);
    t.extraRetryTimer = null;
    if (!t.relay.listening) return; // start() comes back here once its own port listens
    const want = t.record.extra_ports ?? [];
    for (const port of t.relay.extraPorts) if (!want.includes(port)) await t.relay.closeAlso(port);
    let waiting = false;
    for (const port of want) {
      if (t.relay.extraPorts.includes(port)) continue;
      try {
        await this.listen(t.relay, port);
        if (t.extraFailing.delete(port)) this.log.info('tunnel.port_added', { fs: t.record.fs_id, port, msg: `listens on its extra port ${port} again` });
      } catch (err) {
        const e = asRelayError(err);
        waiting = true;
        t.extraError = { code: e.code, message: e.message, at: new Date().toISOString() };
        if (!t.extraFailing.has(port)) {
          t.extraFailing.add(port);
          t.note('listen_failed', e);
          this.log.error('tunnel.listen_failed', { fs: t.record.fs_id, code: e.code, msg: `${e.message}; mounts that name port ${port} wait, and it is tried again every ${LISTEN_RETRY_MS / 1000} s`, port });
        }
      }
    }
    if (waiting && !this.closed) {
      t.extraRetryTimer = setTimeout(() => void this.serial(async () => {
        if (!this.closed && this.tunnels.get(t.record.fs_id) === t) await this.syncExtraPorts(t);
      }), LISTEN_RETRY_MS);
    }
  }

  /** The ports of port_range that mounts of `fsId` still name after its tunnel was force-stopped, and no tunnel holds. */
  private portsLeftMounted(fsId: string, used: ReadonlySet<number>, first: number, last: number): number[] {
    return [...this.leftMounted].filter(([port, owner]) => owner === fsId && !used.has(port) && port >= first && port <= last).map(([port]) => port);
  }

  /** File descriptors the tunnels hold by their own count: one listener each, two per relayed connection. */
  descriptorsInUse(): number {
    let n = 0;
    for (const t of this.tunnels.values()) n += portsOf(t.record).length + 2 * t.relay.counters.connectionsActive;
    return n;
  }

  /** A failure of the whole daemon that every tunnel's new connections meet (no file descriptor left). */
  recordDaemonError(e: RelayError): void {
    const at = new Date().toISOString();
    for (const t of this.tunnels.values()) {
      t.relay.lastError = { code: e.code, message: e.message, at };
      t.note('daemon_error', e);
    }
  }

  /** The last health probe of a tunnel; a change of outcome goes into its history and the log. */
  recordProbe(fsId: string, result: ProbeResult): void {
    const t = this.tunnels.get(fsId);
    if (!t) return;
    const before = t.probe;
    t.probe = result;
    if (!result.ok && (before === null || before.ok || before.code !== result.code)) {
      t.note('probe_failed', { code: result.code ?? 'INTERNAL', message: result.message ?? '' });
      this.log.warn('tunnel.probe_failed', { fs: fsId, code: result.code ?? undefined, msg: result.message ?? undefined });
    } else if (result.ok && before !== null && !before.ok) {
      t.note('probe_ok');
      this.log.info('tunnel.probe_ok', { fs: fsId });
    }
  }

  /** relay.* changed (a config reload): every relay takes the new timeouts; relays made later read them from the config. */
  reconfigure(): void {
    for (const t of this.tunnels.values()) t.relay.useTimeouts(this.cfg.relay.connect_timeout * 1000, this.cfg.relay.close_timeout * 1000);
  }

  /**
   * Probes were turned off (health.probe_interval 0 at a config reload):
   * each tunnel forgets its last probe and mount checks, which nothing will
   * renew, as if the daemon had started with probes off. Otherwise a probe
   * that failed once would fail /healthz, and hold efs_relay_upstream_up at
   * 0, for good.
   */
  forgetProbes(): void {
    for (const t of this.tunnels.values()) {
      t.probe = null;
      t.mountsFailing = [];
    }
  }

  recordMountChecks(fsId: string, failing: MountCheck[]): void {
    const t = this.tunnels.get(fsId);
    if (!t) return;
    for (const f of failing) {
      if (!t.mountsFailing.some((m) => m.dir === f.dir && m.code === f.code)) {
        t.note('mount_unhealthy', f, f.dir);
        this.log.warn('mount.unhealthy', { fs: fsId, code: f.code, dir: f.dir, msg: f.message });
      }
    }
    t.mountsFailing = failing;
  }

  release(fsId: string): void {
    const n = (this.claims.get(fsId) ?? 1) - 1;
    if (n > 0) this.claims.set(fsId, n);
    else this.claims.delete(fsId);
  }

  /** The tunnel whose port an NFS mount names, if any. */
  byPort(port: number): TunnelView | null {
    return this.holderOf(port)?.view() ?? null;
  }

  /** Whether a tunnel listens on `port` now, as its own port or an extra one. */
  servesPort(port: number): boolean {
    const t = this.holderOf(port);
    if (!t) return false;
    return port === t.record.port ? t.relay.listening : t.relay.extraPorts.includes(port);
  }

  /** The tunnel that has `dir` among its recorded mounts, if any. */
  byMount(dir: string): TunnelView | null {
    for (const t of this.tunnels.values()) if (t.record.mounts.includes(dir)) return t.view();
    return null;
  }

  recordMount(fsId: string, dir: string): Promise<void> {
    return this.serial(async () => {
      const t = this.get(fsId);
      if (t.record.mounts.includes(dir)) return;
      await this.store.write({ ...t.record, mounts: [...t.record.mounts, dir] });
      // Changed in memory only once on disk: a failed write is tried again at the next /proc/mounts read.
      t.record = { ...t.record, mounts: [...t.record.mounts, dir] };
      t.note('mounted', undefined, dir);
      this.log.info('tunnel.mounted', { fs: fsId, dir, port: t.record.port });
    });
  }

  /** Forget a mount; then stop the tunnel if nothing else wants it. */
  forgetMount(fsId: string, dir: string, why: string): Promise<void> {
    return this.serial(async () => {
      const t = this.tunnels.get(fsId);
      if (!t || !t.record.mounts.includes(dir)) return;
      const next = { ...t.record, mounts: t.record.mounts.filter((m) => m !== dir) };
      await this.store.write(next);
      t.record = next; // as in recordMount: only once on disk
      t.note('unmounted', undefined, dir);
      this.log.info('tunnel.unmounted', { fs: fsId, dir, port: t.record.port, msg: why });
      await this.stopIfUnusedLocked(fsId);
    });
  }

  /** Stop a tunnel that no mount, no fstab line and no attach in flight wants. */
  stopIfUnused(fsId: string): Promise<void> {
    return this.serial(() => this.stopIfUnusedLocked(fsId));
  }

  /** What uses a tunnel, as a reason it is kept; null when nothing does (fstab's wish aside). */
  private usedBy(t: Tunnel): string | null {
    const rec = t.record;
    if (rec.mounts.length > 0) return `mounted at ${rec.mounts.join(', ')}`;
    // A mount through its ports in /proc/mounts (the last read) that the record lacks (not written yet).
    const mountedPort = portsOf(rec).find((p) => this.mountedPorts.has(p));
    if (mountedPort !== undefined) return `a mount in ${this.cfg.mount.proc_mounts} goes through its port ${mountedPort}`;
    if (this.claims.get(rec.fs_id)) return 'a mount of it is under way';
    return null;
  }

  private async stopIfUnusedLocked(fsId: string): Promise<void> {
    const t = this.tunnels.get(fsId);
    if (!t || this.fstabWanted.has(fsId) || this.usedBy(t) !== null) return;
    try {
      await this.remove(t, 'no mount and no fstab line uses it');
    } catch (err) {
      // Only its record stands in the way (a read-only state dir): a tunnel too many harms nobody.
      if (!(err instanceof RelayError) || err.code !== 'STATE_WRITE_FAILED') throw err;
      this.log.warn('tunnel.stop_failed', { fs: fsId, code: err.code, port: t.record.port, msg: `nothing uses ${fsId}'s tunnel any more, but it keeps running: ${err.message}; \`efsctl stop ${fsId}\` stops it once the state dir can be written` });
    }
  }

  /**
   * Close a tunnel's relay and forget it; its record goes too unless it is
   * already gone from disk. Mounts it still had (a forced stop, or a record
   * removed by hand) keep naming its port: whose port it was is kept.
   */
  private async remove(t: Tunnel, why: string, deleteRecord = true): Promise<void> {
    // The record goes first: a record that cannot be removed (a read-only
    // state dir) would bring the tunnel back at the next restart or state
    // change, so the tunnel keeps running and the caller hears why.
    if (deleteRecord) await this.store.remove(t.record.fs_id);
    this.untrack(t);
    await t.relay.close();
    this.log.info('tunnel.stopped', { fs: t.record.fs_id, port: t.record.port, msg: why });
    const { fs_id: fsId, mounts } = t.record;
    if (mounts.length === 0) return;
    // Each of its ports may be the one a mount names.
    for (const port of portsOf(t.record)) {
      this.leftMounted.set(port, fsId);
      try {
        await this.store.writeLeftMount({ port, fs_id: fsId, mounts: [...mounts], stopped: new Date().toISOString() });
      } catch (err) {
        // The tunnel is stopped either way; only a daemon restart would forget whose port it is.
        this.log.warn('state.write_failed', { fs: fsId, code: 'STATE_WRITE_FAILED', msg: (err as Error).message });
      }
    }
  }

  /**
   * fstab changed: start a tunnel for each wanted fs that has none, and stop
   * fstab-made tunnels that are no longer wanted and not mounted. Lines that
   * cannot make a tunnel are returned, to be logged with their line numbers.
   */
  setFstabWanted(wanted: Map<string, AddRequest>): Promise<Array<{ fsId: string; error: RelayError }>> {
    return this.serial(async () => {
      this.fstabWanted = wanted;
      const failed: Array<{ fsId: string; error: RelayError }> = [];
      for (const [fsId, req] of wanted) {
        try {
          await this.fstabTunnelLocked(req);
        } catch (err) {
          // A running tunnel kept for the line (fstabTunnelLocked) is still the line's: not stopped as unwanted.
          if (!this.tunnels.has(fsId)) this.fstabWanted.delete(fsId);
          failed.push({ fsId, error: asRelayError(err) });
        }
      }
      for (const t of [...this.tunnels.values()]) {
        if (t.record.source === 'fstab') await this.stopIfUnusedLocked(t.record.fs_id);
      }
      return failed;
    });
  }

  /**
   * The tunnel an fstab line asks for. A running one that is another (the line was edited: another target, CA
   * bundle, verify level or tlsport, or a record from an older daemon) is made again as the line asks when fstab
   * made it and nothing uses it; else it is kept, and the line is reported until nothing uses it.
   */
  private async fstabTunnelLocked(req: AddRequest): Promise<void> {
    const running = this.tunnels.get(req.fsId);
    try {
      await this.addLocked(req); // for a running tunnel, only the check that it is the one asked for
    } catch (err) {
      if (!running || !(err instanceof RunningTunnelDiffers)) throw err;
      const { code, differs } = err;
      const kept = this.usedBy(running) ?? this.fstabMayNotRemake(running, req);
      if (kept !== null) {
        throw new RelayError(code, `${req.fsId}'s running tunnel is not the one this line asks for (${differs}); it is kept, since ${kept}`, {
          hint: 'Unmount its mounts, or `efsctl stop FS_ID` a tunnel nothing mounts: the daemon then makes the tunnel as the line asks. Or make the line agree with the running tunnel (`efsctl status FS_ID` shows it).',
        });
      }
      await this.remove(running, `its fstab line now asks for another tunnel (${differs}), and nothing uses this one`);
      await this.addLocked(req);
    }
  }

  /** Why fstab may not make a running tunnel again as its line asks, though nothing uses it; null when it may. */
  private fstabMayNotRemake(running: Tunnel, req: AddRequest): string | null {
    const rec = running.record;
    if (rec.source !== 'fstab') return `\`efsctl add\` or a mount made it (source ${rec.source}), not this line`;
    // Made again, it could not have the port: the line would be left with no tunnel at all.
    const wantPort = requestedPort(tunnelOptions(req.options), this.cfg);
    const holder = wantPort === null ? undefined : this.holderOf(wantPort);
    return holder && holder !== running ? `port ${wantPort} is the tunnel of ${holder.record.fs_id}` : null;
  }

  stop(fsId: string, force: boolean): Promise<TunnelView> {
    return this.serial(async () => {
      const t = this.get(fsId);
      if (t.record.mounts.length > 0 && !force) {
        throw new RelayError('TUNNEL_MOUNTED', `${fsId} is mounted at ${t.record.mounts.join(', ')}; refusing to stop its tunnel`);
      }
      const mountedPort = portsOf(t.record).find((p) => this.mountedPorts.has(p));
      if (mountedPort !== undefined && !force) {
        throw new RelayError('TUNNEL_MOUNTED', `a mount in ${this.cfg.mount.proc_mounts} goes through ${fsId}'s port ${mountedPort} (not in its record yet); refusing to stop its tunnel`);
      }
      const view = t.view();
      await this.remove(t, force ? 'efsctl stop --force' : 'efsctl stop');
      return view;
    });
  }

  /** Close every listener, let connections drain, keep every record. */
  shutdown(drainMs: number): Promise<void> {
    this.closed = true;
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
    return this.serial(async () => {
      const all = [...this.tunnels.values()];
      for (const t of all) this.untrack(t);
      await Promise.all(all.map((t) => t.relay.close(drainMs)));
    });
  }

  private get(fsId: string): Tunnel {
    const t = this.tunnels.get(fsId);
    if (!t) throw new RelayError('TUNNEL_NOT_FOUND', `No tunnel for ${fsId}`);
    return t;
  }

  /**
   * What a tunnel's connections verify and present: its CA bundle's trust, and for an access point or IAM tunnel
   * its client certificate too, which names the access point, and signs with AWS credentials, to the mount target.
   * Rejects with NO_AWS_CREDENTIALS when an IAM tunnel's credentials cannot be found. `keepCert`: the certificate
   * it presents now stays (a CA bundle reload, which must not wait for, or fail on, credentials).
   */
  private async tunnelTrust(rec: Pick<TunnelRecord, 'fs_id' | 'options' | 'target'>, keepCert = false): Promise<Trust> {
    const bundle = await this.bundleFor(rec.options);
    const want = this.clientWant(rec);
    if (want === null) return bundle.trust;
    const held = keepCert ? this.presented.get(rec.fs_id) : undefined;
    const client = held ?? await this.clientCerts.identity(rec.fs_id, want);
    this.presented.set(rec.fs_id, client);
    this.renewTimer ??= setInterval(() => void this.renewClientCerts(), RENEW_CHECK_MS).unref();
    return clientTrust(bundle.pem, bundle.trust, this.cfg.tls.max_version, client);
  }

  /** What a tunnel's client certificate names, or null when it presents none. */
  private clientWant(rec: Pick<TunnelRecord, 'options' | 'target'>): ClientWant | null {
    const accessPoint = rec.options.accesspoint ?? null;
    const iam = Object.hasOwn(rec.options, 'iam');
    if (accessPoint === null && !iam) return null;
    const region = rec.target.region;
    const places = credentialPlaces(this.cfg, region, process.env);
    return { accessPoint, iam: iam ? { region, credentials: () => awsCredentials(rec.options, places) } : null };
  }

  /**
   * Tunnels whose certificate ages past RENEW_BELOW_MS (or whose credentials near their end) present a new one from
   * their next connection on. One that cannot be made now (credentials not found) is tried again at the next check,
   * while the tunnel keeps presenting the one it has.
   */
  private renewClientCerts(): Promise<void> {
    return this.serial(async () => {
      for (const [fsId, t] of this.tunnels) {
        const want = this.clientWant(t.record);
        // A tunnel still waiting for its bundle or credentials (start) makes its certificate on its own retry.
        if (!want || this.closed || waitingToStart(t)) continue;
        const before = this.presented.get(fsId);
        let trust: Trust;
        try {
          trust = await this.tunnelTrust(t.record);
        } catch (err) {
          const e = asRelayError(err);
          t.note('client_cert_renew_failed', e);
          this.log.error('tunnel.client_cert_renew_failed', { fs: fsId, code: e.code, msg: `${e.message}; new connections present the certificate made before, tried again in ${RENEW_CHECK_MS / 60_000} minutes` });
          continue;
        }
        if (this.presented.get(fsId) === before) continue; // not due yet: the same certificate
        t.relay.useContext(trust);
        const names = [want.accessPoint === null ? null : `access point ${want.accessPoint}`, want.iam === null ? null : `IAM authorization (credentials from ${this.clientCerts.view(fsId)?.iam_credentials ?? '?'})`].filter((x) => x !== null).join(' and ');
        this.log.info('tunnel.client_cert_renewed', { fs: fsId, msg: `new connections present a new client certificate for ${names}, valid for 3 hours`, accesspoint: want.accessPoint ?? undefined });
      }
    });
  }

  private async bundleFor(options: MountOptions): Promise<{ pem: string; trust: Trust }> {
    const caFile = caFileFor(options, this.cfg);
    let entry = this.contexts.get(caFile);
    if (!entry) {
      entry = readCaBundle(caFile).then(async ({ pem, certificates }) => {
        await this.trust.atRead(caFile, 'CA bundle');
        return { pem, trust: policyTrust(pem, certificates, this.cfg.tls.max_version) };
      });
      const made = entry;
      // Forgotten on failure, so the next tunnel reads the file again (unless a reload has replaced it meanwhile).
      made.catch(() => {
        if (this.contexts.get(caFile) === made) this.contexts.delete(caFile);
      });
      this.contexts.set(caFile, entry);
      for (const fn of this.caBundleListeners) fn(caFile);
    }
    return entry;
  }

  private makeRelay(rec: TunnelRecord, trust: Trust): Relay {
    return new Relay({
      fsId: rec.fs_id,
      port: rec.port,
      listenHost: '127.0.0.1',
      certName: certificateName(rec.fs_id, rec.target.dns_name),
      address: rec.target.address,
      targetPort: rec.target.port,
      secureContext: trust.ctx,
      held: verifyLevel(rec.options) === 3 ? trust.held : null,
      maxVersion: this.cfg.tls.max_version,
      connectTimeoutMs: this.cfg.relay.connect_timeout * 1000,
      closeTimeoutMs: this.cfg.relay.close_timeout * 1000,
      // Kept for the name the target has now (a record edited to another name starts without one).
      dnsAnswer: rec.dns_answer?.name === rec.target.address ? rec.dns_answer : null,
      mountTargetFallback: this.mountTargetFallback(rec),
      ocsp: ocspChecking(rec.options, this.cfg.tls.ocsp) === 'ocsp' ? this.ocsp : null,
      netns: rec.options.netns ? this.namespaces.get(rec.options.netns) : null,
    });
  }

  /**
   * Where a tunnel to a name asks the EFS API for its mount target when DNS has no address for the name: with the
   * credentials an IAM mount of its options would sign with, for the zone az= names or this instance's zone.
   * None when it does not fall back (fallsBackToApi).
   */
  private mountTargetFallback(rec: TunnelRecord): MountTargetFallback | null {
    if (!fallsBackToApi(this.cfg, rec.options)) return null;
    return () => findMountTarget(this.cfg, rec.fs_id, rec.target.region, rec.options, async () => (await this.region.azId()).az_id);
  }

  private track(record: TunnelRecord, relay: Relay): Tunnel {
    const t = new Tunnel(record, relay, () => this.cfg.health.probe_interval > 0, () => this.clientCerts.view(record.fs_id));
    t.restarts = this.restartCount.get(record.fs_id) ?? 0;
    // One line per new failure kind, then at most one a minute: a flapping
    // target, or an NFS client reconnecting into the same failure, must not flood the journal.
    // (dns_fallback: while DNS gives no answer, connections go on to its last address.)
    const logs = {
      handshake_failed: new RateLimitedLog(60_000), session_failed: new RateLimitedLog(60_000), accept_failed: new RateLimitedLog(60_000),
      dns_fallback: new RateLimitedLog(60_000),
    };
    for (const [kind, limiter] of Object.entries(logs) as Array<[keyof typeof logs, RateLimitedLog]>) {
      relay.on(kind, (err) => {
        t.note(kind, err);
        if (limiter.admit(err.code)) this.log.warn(`tunnel.${kind}`, { fs: record.fs_id, code: err.code, msg: err.message, port: record.port });
      });
    }
    relay.on('dns_changed', (answer) => void this.serial(() => this.keepDnsAnswer(t, answer)));
    relay.on('mount_target_from_api', (message) => {
      t.note('mount_target_from_api');
      this.log.info('tunnel.mount_target_from_api', { fs: record.fs_id, msg: message, port: record.port });
    });
    relay.on('dns_answered', (address) => {
      logs.dns_fallback.reset();
      t.note('dns_answered');
      this.log.info('tunnel.dns_answered', { fs: record.fs_id, msg: `DNS answers for ${record.target.dns_name} again`, address, port: record.port });
    });
    relay.on('handshake', () => {
      if (logs.handshake_failed.reset()) {
        this.log.info('tunnel.handshake_ok', { fs: record.fs_id, port: record.port });
        t.note('handshake_ok');
      }
    });
    this.tunnels.set(record.fs_id, t);
    for (const fn of this.relayListeners) fn(record.fs_id, relay);
    return t;
  }

  /** Keep DNS's last answer in the record; one that cannot be written is only logged (DNS is asked at every connection anyway). */
  private async keepDnsAnswer(t: Tunnel, answer: DnsAnswer | null): Promise<void> {
    if (this.tunnels.get(t.record.fs_id) !== t) return;
    const next: TunnelRecord = { ...t.record };
    if (answer) next.dns_answer = { name: t.record.target.address, ...answer };
    else delete next.dns_answer;
    try {
      await this.store.write(next);
    } catch (err) {
      this.log.warn('state.write_failed', { fs: t.record.fs_id, code: 'STATE_WRITE_FAILED', msg: `${(err as Error).message}; DNS's last answer is not kept, so a restart while DNS does not answer would not know it` });
      return;
    }
    t.record = next;
  }

  /** `keepCert`: the same record starts again at once, and its client certificate (just made) goes with it. */
  private untrack(t: Tunnel, keepCert = false): void {
    if (t.retryTimer) clearTimeout(t.retryTimer);
    t.retryTimer = null;
    if (t.extraRetryTimer) clearTimeout(t.extraRetryTimer);
    t.extraRetryTimer = null;
    if (this.tunnels.get(t.record.fs_id) === t) {
      this.tunnels.delete(t.record.fs_id);
      if (keepCert) return;
      this.clientCerts.forget(t.record.fs_id);
      this.presented.delete(t.record.fs_id);
      this.keepUsedNamespaces();
    }
  }

  /** A namespace's helper runs while a tunnel is in that namespace. */
  private keepUsedNamespaces(): void {
    this.namespaces.keepOnly(new Set([...this.tunnels.values()].flatMap((t) => t.record.options.netns ?? [])));
  }

  /** Bring a stored record up on its own port; if the port is busy, keep retrying it (never move it). */
  private async start(rec: TunnelRecord, why: string): Promise<void> {
    let trust: Trust;
    try {
      trust = await this.tunnelTrust(rec);
    } catch (err) {
      const e = err as RelayError;
      // Without a CA bundle there is no safe relay, and without credentials no IAM mount: keep the record, say why
      // once, and try again every few seconds, so fixing the file (or the role) is enough.
      const t = this.track(rec, this.makeRelay(rec, noTrust(this.cfg.tls.max_version)));
      t.listenError = { code: e.code, message: e.message, at: new Date().toISOString() };
      t.note('start_failed', e);
      this.log.error('tunnel.start_failed', { fs: rec.fs_id, code: e.code, msg: `${e.message}; retrying every ${LISTEN_RETRY_MS / 1000} s`, port: rec.port });
      const retry = (): void => {
        t.retryTimer = setTimeout(() => void this.serial(async () => {
          if (this.closed || this.tunnels.get(rec.fs_id) !== t) return;
          // The bundle (and credentials) are read while the waiting tunnel still stands in the table: list, status
          // and metrics must never miss it. Once read, start() finds the context and certificate made, and tracks
          // the new tunnel before any request can come in.
          const failed = await this.tunnelTrust(rec).then(() => null, (err: unknown) => asRelayError(err));
          if (this.closed || this.tunnels.get(rec.fs_id) !== t) return;
          if (failed) {
            // Still unusable, maybe for another reason now (a file that appeared but does not parse): status says which.
            t.listenError = { code: failed.code, message: failed.message, at: new Date().toISOString() };
            return retry();
          }
          this.untrack(t, true);
          await this.start(rec, why);
        }), LISTEN_RETRY_MS);
      };
      if (!this.closed) retry();
      return;
    }
    const t = this.track(rec, this.makeRelay(rec, trust));
    const attempt = async (): Promise<void> => {
      t.retryTimer = null;
      if (this.closed || this.tunnels.get(rec.fs_id) !== t) return;
      try {
        await this.listen(t.relay);
        // A listener that comes back after failing, or after its record changed, is a restart.
        if (t.listenError !== null || why === 'restarted') {
          t.restarts = (this.restartCount.get(rec.fs_id) ?? 0) + 1;
          this.restartCount.set(rec.fs_id, t.restarts);
        }
        t.listenError = null;
        t.note(why);
        this.log.info(`tunnel.${why}`, { fs: rec.fs_id, port: rec.port, target: joinHost(rec.target.address, rec.target.port), extra_ports: rec.extra_ports?.join(',') });
        await this.syncExtraPorts(t);
      } catch (err) {
        const e = err as RelayError;
        const first = t.listenError === null;
        t.listenError = { code: e.code, message: e.message, at: new Date().toISOString() };
        if (first) {
          t.note('listen_failed', e);
          this.log.error('tunnel.listen_failed', { fs: rec.fs_id, code: e.code, msg: `${e.message}; retrying every ${LISTEN_RETRY_MS / 1000} s on the same port`, port: rec.port });
        }
        if (!this.closed) t.retryTimer = setTimeout(() => void attempt(), LISTEN_RETRY_MS);
      }
    };
    await attempt();
  }
}
