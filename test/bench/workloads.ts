// The client side of each benchmark workload, run against one local port.
// The same code drives every path, so any client overhead is common to all.
import { connect, type Socket } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';

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

export interface Bulk {
  mbPerSec: number;
  cpuPerGiB: number | null;
}

function header(mode: string, bytes: number): Buffer {
  const h = Buffer.alloc(9);
  h.write(mode, 0);
  h.writeBigUInt64BE(BigInt(bytes), 1);
  return h;
}

/** Send `bytes` on one connection and wait for the service's acknowledgement. */
export async function upload(port: number, bytes: number, tunnelPid: number | null): Promise<Bulk> {
  const s = await open(port);
  const cpuUsed = cpuSince(tunnelPid);
  const t0 = performance.now();
  const acked = new Promise<void>((resolve, reject) => {
    s.once('data', () => resolve());
    s.once('error', reject);
  });
  s.write(header('U', bytes));
  for (let left = bytes; left > 0; left -= BLOCK.length) {
    const chunk = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
    if (!s.write(chunk)) await new Promise<void>((r) => s.once('drain', () => r()));
  }
  await acked;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuUsed();
  s.destroy();
  return { mbPerSec: bytes / 1e6 / seconds, cpuPerGiB: cpu === null ? null : cpu / (bytes / 2 ** 30) };
}

/** Receive `bytes` on one connection. */
export async function download(port: number, bytes: number, tunnelPid: number | null): Promise<Bulk> {
  let got = 0;
  let done = (): void => {};
  const s = await open(port, (n) => {
    got += n;
    if (got >= bytes) done();
  });
  const cpuUsed = cpuSince(tunnelPid);
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    done = resolve;
    s.once('error', reject);
    s.once('close', () => (got >= bytes ? resolve() : reject(new Error(`download closed after ${got} of ${bytes} bytes`))));
    s.write(header('D', bytes));
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuUsed();
  s.destroy();
  return { mbPerSec: bytes / 1e6 / seconds, cpuPerGiB: cpu === null ? null : cpu / (bytes / 2 ** 30) };
}

export interface Latency {
  p50us: number;
  p99us: number;
  /** CPU time (user + system) the tunnel process spent per round trip, in µs; null without a tunnel. */
  cpuUsPerRoundTrip: number | null;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

/** `count` sequential round trips of `size`-byte requests and 200-byte replies on one connection. */
export async function rpc(port: number, count: number, size: number, tunnelPid: number | null): Promise<Latency> {
  let replied = (_n: number): void => {};
  const s = await open(port, (n) => replied(n));
  s.write('R');
  const req = Buffer.alloc(4 + size, 0x71);
  req.writeUInt32BE(size, 0);
  const times = new Float64Array(count);
  let i = 0;
  let pending = 0;
  let t0 = 0;
  const cpuUsed = cpuSince(tunnelPid);
  await new Promise<void>((resolve, reject) => {
    const send = (): void => {
      t0 = performance.now();
      s.write(req);
    };
    replied = (n: number): void => {
      pending += n;
      while (pending >= 200) {
        pending -= 200;
        times[i++] = (performance.now() - t0) * 1000;
        if (i === count) {
          resolve();
          return;
        }
        send();
      }
    };
    s.once('error', reject);
    send();
  });
  const cpu = cpuUsed();
  s.destroy();
  times.sort();
  return { p50us: percentile(times, 0.5), p99us: percentile(times, 0.99), cpuUsPerRoundTrip: cpu === null ? null : (cpu / count) * 1e6 };
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
