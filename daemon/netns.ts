// Tunnels inside another network namespace (the netns= option, as efs-utils
// runs stunnel under `nsenter --net=PATH`). One helper process per namespace
// (netns-helper.ts) makes the sockets there and hands them over; the daemon
// listens, accepts, dials TLS and relays on them itself. A listener, once
// handed over, no longer needs the helper: a helper that dies is started
// again at the next connection, and no tunnel or open connection is dropped.
import { spawn, type ChildProcess } from 'node:child_process';
import { Socket } from 'node:net';
import { isSea } from 'node:sea';
import { RelayError } from './errors.js';
import { READY, type NetnsAnswer, type NetnsAsk } from './netns-helper.js';

/** How long the helper may take to start inside the namespace. */
const START_TIMEOUT_MS = 10_000;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface Waiter { answered: (answer: NetnsAnswer, handle: object | undefined) => void; lost: (err: RelayError) => void }

/** An errno-like error from the helper, so that connection failures are classified as the daemon's own are. */
function errnoError(a: Extract<NetnsAnswer, { ok: false }>): NodeJS.ErrnoException {
  return Object.assign(new Error(a.message), { code: a.code });
}

/**
 * This very program with --netns-helper: the packaged single executable is the program itself (its argv[1] repeats
 * the executable's path), node runs the bundle or the compiled main.js as its script.
 */
function helperCommand(): string[] {
  return isSea() ? [process.execPath, '--netns-helper'] : [process.execPath, process.argv[1] as string, '--netns-helper'];
}

export class NetNamespace {
  private child: ChildProcess | null = null;
  private started: Promise<ChildProcess> | null = null;
  private readonly waiting = new Map<number, Waiter>();
  private nextId = 1;
  private closed = false;

  constructor(
    /** The namespace's path, as netns= gives it (/var/run/netns/NAME, /proc/PID/ns/net). */
    readonly path: string,
    /** Told when a running helper ends on its own (it is started again when next needed). */
    private readonly ended: (why: string) => void = () => {},
  ) {}

  /** A TCP handle bound to host:port inside the namespace (not listening yet), for net.Server.listen(handle). */
  async listen(host: string, port: number): Promise<object> {
    const { handle } = await this.ask({ op: 'listen', host, port });
    return handle;
  }

  /** A TCP connection to host:port made inside the namespace (errors carry the errno code, as net's do). */
  async connect(host: string, port: number, timeoutMs: number): Promise<Socket> {
    const { handle } = await this.ask({ op: 'connect', host, port, timeoutMs });
    return new Socket({ handle, allowHalfOpen: true, readable: true, writable: true } as ConstructorParameters<typeof Socket>[0]);
  }

  /** Stop the helper (the last tunnel in the namespace stopped). Sockets already handed over are not touched. */
  close(): void {
    this.closed = true;
    this.child?.kill();
    this.child = null;
    this.started = null;
  }

  private async ask(what: DistributiveOmit<NetnsAsk, 'id'>): Promise<{ handle: object }> {
    if (this.closed) throw new RelayError('NETNS_FAILED', `The helper of network namespace ${this.path} was stopped`);
    const child = await this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, {
        answered: (answer, handle) => {
          if (answer.ok && handle) resolve({ handle });
          else if (!answer.ok) reject(errnoError(answer));
          else reject(new RelayError('NETNS_FAILED', `The helper of network namespace ${this.path} answered without a socket`));
        },
        lost: reject,
      });
      child.send({ ...what, id } as NetnsAsk, (err) => {
        if (!err) return;
        this.waiting.delete(id);
        reject(new RelayError('NETNS_FAILED', `Cannot reach the helper of network namespace ${this.path}: ${err.message}`, { cause: err }));
      });
    });
  }

  /** The helper, started inside the namespace if it is not running. */
  private start(): Promise<ChildProcess> {
    this.started ??= new Promise<ChildProcess>((resolve, reject) => {
      // No shell: the path is one argument, whatever it holds (efs-utils once had a command injection here).
      const child = spawn('nsenter', [`--net=${this.path}`, '--', ...helperCommand()], {
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        serialization: 'json',
      });
      let stderr = '';
      let ready = false;
      child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        fail(`its helper did not start within ${START_TIMEOUT_MS / 1000} s`);
      }, START_TIMEOUT_MS);
      const fail = (why: string): void => {
        clearTimeout(timer);
        this.started = null;
        reject(new RelayError('NETNS_FAILED', `Cannot enter network namespace ${this.path}: ${why}`));
      };
      child.on('error', (err: NodeJS.ErrnoException) => {
        if (ready) return;
        fail(err.code === 'ENOENT' ? 'nsenter is not installed (it comes with util-linux)' : err.message);
      });
      child.on('message', (m: NetnsAnswer | typeof READY, handle: object | undefined) => {
        if (m === READY) {
          ready = true;
          clearTimeout(timer);
          // Stopped while it started (its last tunnel went): it is not kept.
          if (this.closed) {
            child.kill();
            reject(new RelayError('NETNS_FAILED', `The helper of network namespace ${this.path} was stopped`));
            return;
          }
          this.child = child;
          resolve(child);
          return;
        }
        const w = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (w) w.answered(m, handle);
        // An answer nobody waits for any more: its socket is closed, not leaked.
        else if (handle) (handle as { close?: () => void }).close?.();
      });
      child.on('exit', (code, signal) => {
        const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
        if (!ready) return fail(stderr.trim().replace(/^nsenter: /, '') || `nsenter ${how}`);
        if (this.child === child) {
          this.child = null;
          this.started = null;
        }
        const lost = [...this.waiting.values()];
        this.waiting.clear();
        const e = new RelayError('NETNS_FAILED', `The helper of network namespace ${this.path} ${how}`);
        for (const w of lost) w.lost(e);
        if (!this.closed) this.ended(`${e.message}${stderr.trim() ? ` (${stderr.trim()})` : ''}; it is started again at the next connection`);
      });
    });
    return this.started;
  }
}

/** One helper per namespace, shared by the tunnels in it, and stopped once no tunnel is in it. */
export class Namespaces {
  private readonly held = new Map<string, NetNamespace>();

  constructor(private readonly ended: (path: string, why: string) => void = () => {}) {}

  get(path: string): NetNamespace {
    let ns = this.held.get(path);
    if (!ns) this.held.set(path, (ns = new NetNamespace(path, (why) => this.ended(path, why))));
    return ns;
  }

  /** Stop the helpers of every namespace but these (the namespaces of the tunnels that remain). */
  keepOnly(paths: ReadonlySet<string>): void {
    for (const [path, ns] of this.held) {
      if (paths.has(path)) continue;
      ns.close();
      this.held.delete(path);
    }
  }
}
