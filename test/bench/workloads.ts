// The client side of each benchmark workload, run against one local port.
// The same code drives every path, so any client overhead is common to all.
import { connect, type Socket } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { nfsCatSha256, nfsCp } from '../helpers/nfs.js';

const BLOCK = Buffer.alloc(1 << 20, 0x75);
/**
 * Where the client reads what it only counts. One buffer, reused, so that
 * the client's own garbage collection stays out of the runs it measures.
 */
const SINK = Buffer.allocUnsafe(64 * 1024);

/** A connection to `port`; with `counted`, what arrives is read into SINK and only its length reported. */
function open(port: number, counted?: (bytes: number) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const onread = counted ? { onread: { buffer: SINK, callback: (n: number) => (counted(n), true) } } : {}; // true: keep reading
    const s = connect({ host: '127.0.0.1', port, noDelay: true, ...onread });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** utime + stime of one process, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // CLK_TCK is 100 on Linux
}

/** Starts counting the tunnel's CPU; the returned function gives the seconds since, or null without a tunnel. */
function cpuSince(tunnelPid: number | null): () => number | null {
  const start = tunnelPid ? cpuSeconds(tunnelPid) : 0;
  return () => (tunnelPid ? cpuSeconds(tunnelPid) - start : null);
}

export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

/** How often each thread of these processes was switched out (each sleep-and-wake counts), by thread id. */
export function threadSwitches(...pids: number[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of pids) {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      let status: string;
      try {
        status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      } catch {
        continue; // the thread ended between listing and reading
      }
      let n = 0;
      for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) n += Number(m[1]);
      out.set(tid, n);
    }
  }
  return out;
}

/**
 * Switches between two readings, over the threads alive at the second. A
 * thread that ended in between (stunnel's thread of a connection that just
 * closed) is left out: summing all threads at each reading would count its
 * whole life as negative.
 */
export function switchesBetween(before: Map<string, number>, after: Map<string, number>): number {
  let n = 0;
  for (const [tid, count] of after) n += count - (before.get(tid) ?? 0);
  return n;
}

/** What a transfer run in turns (bulk or NFS) moved, how fast, and at what CPU cost to the tunnel. */
export interface Throughput {
  /** Bytes moved so far, in the turns run. */
  bytes: number;
  mbPerSec: number;
  /** CPU seconds (user + system) the tunnel process spent per GiB; null without a tunnel. */
  cpuPerGiB: number | null;
}

function throughput(bytes: number, seconds: number, cpuSeconds: number, tunnelPid: number | null): Throughput {
  return { bytes, mbPerSec: bytes / 1e6 / seconds, cpuPerGiB: tunnelPid ? cpuSeconds / (bytes / 2 ** 30) : null };
}

/**
 * One bulk transfer of `total` bytes on one open connection, run in turns of
 * `slice` bytes, like the RPCs (RpcConnection): the bench alternates the
 * paths' turns. Each turn is timed from its first byte to its end (upload:
 * the service's acknowledgement of the slice; download: its last byte), and
 * MB/s is the total over the sum of the turns. The tunnel's CPU adds up over
 * the turns too.
 */
export class BulkConnection {
  private done = 0;
  private seconds = 0;
  private cpu = 0;
  /** Upload: acknowledgements received. Download: bytes received. */
  private progress = 0;
  private wake = (): void => {};

  private constructor(
    private readonly socket: Socket,
    private readonly direction: 'up' | 'down',
    private readonly total: number,
    private readonly slice: number,
    private readonly tunnelPid: number | null,
  ) {}

  static async open(port: number, direction: 'up' | 'down', total: number, slice: number, tunnelPid: number | null): Promise<BulkConnection> {
    let conn: BulkConnection | null = null;
    // Upload acknowledgements are single bytes; download bytes are only counted (into SINK).
    const s = await open(port, (n) => conn?.arrived(n));
    conn = new BulkConnection(s, direction, total, slice, tunnelPid);
    const h = Buffer.alloc(17);
    h.write(direction === 'up' ? 'U' : 'D', 0);
    h.writeBigUInt64BE(BigInt(total), 1);
    h.writeBigUInt64BE(BigInt(slice), 9);
    s.write(h);
    return conn;
  }

  private arrived(n: number): void {
    this.progress += n;
    this.wake();
  }

  /** The next slice; nothing once the total has been moved. */
  async turn(): Promise<void> {
    const n = Math.min(this.slice, this.total - this.done);
    if (n <= 0) return;
    const s = this.socket;
    const cpuUsed = cpuSince(this.tunnelPid);
    const t0 = performance.now();
    // Done when the service has acknowledged one more slice (upload) or n more bytes have arrived (download).
    const goal = this.direction === 'up' ? this.progress + 1 : this.progress + n;
    const arrived = new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => reject(err);
      const closed = (): void => reject(new Error(`${this.direction}load closed after ${this.done} of ${this.total} bytes`));
      this.wake = (): void => {
        if (this.progress < goal) return;
        s.off('error', fail).off('close', closed);
        resolve();
      };
      s.once('error', fail).once('close', closed);
    });
    arrived.catch(() => {}); // awaited below; a close while still writing must not count as unhandled
    if (this.direction === 'up') {
      for (let left = n; left > 0; left -= BLOCK.length) {
        if (!s.write(left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left))) {
          await Promise.race([new Promise<void>((r) => s.once('drain', () => r())), arrived]);
        }
      }
    } else {
      s.write('N');
    }
    await arrived;
    this.seconds += (performance.now() - t0) / 1000;
    this.cpu += cpuUsed() ?? 0;
    this.done += n;
  }

  close(): void {
    this.socket.destroy();
  }

  result(): Throughput {
    return throughput(this.done, this.seconds, this.cpu, this.tunnelPid);
  }
}

export interface Latency {
  /** Measured round trips (the uncounted first one left out). */
  roundTrips: number;
  p50us: number;
  p99us: number;
  /** CPU time (user + system) the tunnel process spent per round trip, in µs; null without a tunnel. */
  cpuUsPerRoundTrip: number | null;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

/**
 * Sequential round trips of `size`-byte requests and 200-byte replies on one
 * open connection, run in turns: the bench alternates the paths' turns, so
 * that a noisy moment of the machine falls on every path alike instead of on
 * whichever ran then. Latencies and the tunnel's CPU add up over the turns.
 */
export class RpcConnection {
  private readonly req: Buffer;
  private readonly times: Float64Array;
  private done = 0;
  private cpu = 0;
  private replied = (_n: number): void => {};

  private constructor(
    private readonly socket: Socket,
    size: number,
    total: number,
    private readonly tunnelPid: number | null,
  ) {
    this.req = Buffer.alloc(4 + size, 0x71);
    this.req.writeUInt32BE(size, 0);
    this.times = new Float64Array(total);
  }

  /**
   * Opens the connection and makes one round trip that is not counted:
   * through a tunnel it waits for the tunnel's own TLS handshake.
   */
  static async open(port: number, size: number, total: number, tunnelPid: number | null): Promise<RpcConnection> {
    let conn: RpcConnection | null = null;
    const s = await open(port, (n) => conn?.replied(n));
    s.write('R');
    conn = new RpcConnection(s, size, total, tunnelPid);
    await conn.trips(1, false);
    return conn;
  }

  /** `count` more round trips, measured. */
  turn(count: number): Promise<void> {
    return this.trips(Math.min(count, this.times.length - this.done), true);
  }

  private async trips(count: number, measured: boolean): Promise<void> {
    if (count <= 0) return;
    const s = this.socket;
    const cpuUsed = cpuSince(measured ? this.tunnelPid : null);
    let left = count;
    let pending = 0;
    let t0 = 0;
    await new Promise<void>((resolve, reject) => {
      // A tunnel that closes mid-turn fails the bench instead of leaving it waiting for a reply.
      const closed = (): void => reject(new Error(`rpc connection closed after ${count - left} of ${count} round trips`));
      const send = (): void => {
        t0 = performance.now();
        s.write(this.req);
      };
      this.replied = (n: number): void => {
        pending += n;
        while (pending >= 200) {
          pending -= 200;
          if (measured) this.times[this.done++] = (performance.now() - t0) * 1000;
          if (--left === 0) {
            s.off('error', reject).off('close', closed);
            resolve();
            return;
          }
          send();
        }
      };
      s.once('error', reject).once('close', closed);
      send();
    });
    this.cpu += cpuUsed() ?? 0;
  }

  close(): void {
    this.socket.destroy();
  }

  /** p50 and p99 over every measured round trip so far, and the tunnel's CPU per round trip. */
  result(): Latency {
    const times = this.times.slice(0, this.done).sort();
    return {
      roundTrips: this.done,
      p50us: percentile(times, 0.5),
      p99us: percentile(times, 0.99),
      cpuUsPerRoundTrip: this.tunnelPid ? (this.cpu / this.done) * 1e6 : null,
    };
  }
}

/**
 * NFS files written (nfs-cp, NFSv3) or read back (nfs-cat, NFSv4) through one
 * path, one file per turn, so that the bench can alternate the paths' turns
 * as it does for bulk and RPCs. Each turn is one nfs-cp or nfs-cat process
 * (its mount, its connection through the tunnel, the file); MB/s is the bytes
 * over the sum of the turns, and the tunnel's CPU adds up over them too. A
 * file read back must match what was written.
 */
export class NfsFiles {
  private next = 0;
  private bytes = 0;
  private seconds = 0;
  private cpu = 0;

  /**
   * @param url the NFS URL of file `i` through this path
   * @param src the local file each turn writes (direction 'write'), or the one each read must match
   */
  constructor(
    private readonly direction: 'write' | 'read',
    private readonly url: (i: number) => string,
    private readonly src: { path: string; bytes: number; sha256: string },
    private readonly files: number,
    private readonly tunnelPid: number | null = null,
  ) {}

  /** The next file; nothing once every file has been moved. */
  async turn(): Promise<void> {
    if (this.next >= this.files) return;
    const url = this.url(this.next++);
    const cpuUsed = cpuSince(this.tunnelPid);
    const t0 = performance.now();
    if (this.direction === 'write') {
      await nfsCp(this.src.path, url);
    } else {
      const read = await nfsCatSha256(url);
      if (read.bytes !== this.src.bytes || read.sha256 !== this.src.sha256) {
        throw new Error(`nfs read of ${url} returned ${read.bytes} bytes (sha256 ${read.sha256}), not the ${this.src.bytes} written (${this.src.sha256})`);
      }
    }
    this.seconds += (performance.now() - t0) / 1000;
    this.cpu += cpuUsed() ?? 0;
    this.bytes += this.src.bytes;
  }

  close(): void {}

  result(): Throughput {
    return throughput(this.bytes, this.seconds, this.cpu, this.tunnelPid);
  }
}

/** `count` sequential connections, each: connect (and through a tunnel, its handshake) and first byte back. Median ms. */
export async function connectSetup(port: number, count: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const s = await open(port);
    await new Promise<void>((resolve, reject) => {
      s.once('data', () => resolve());
      s.once('error', reject);
      s.write('C');
    });
    times.push(performance.now() - t0);
    s.destroy();
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] as number;
}

/** Open `perPort` connections on each port and complete a first byte on each; returns them, still open. */
export async function holdConnections(ports: number[], perPort: number): Promise<Socket[]> {
  const socks: Socket[] = [];
  for (const port of ports) {
    const batch = await Promise.all(Array.from({ length: perPort }, async () => {
      const s = await open(port);
      await new Promise<void>((resolve, reject) => {
        s.once('data', () => resolve());
        s.once('error', reject);
        s.write('C');
      });
      return s;
    }));
    socks.push(...batch);
  }
  return socks;
}
