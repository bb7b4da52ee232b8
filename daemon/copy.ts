// One direction of a relayed connection, copied without a new Buffer per read.
//
// By default Node hands every read to JavaScript in a freshly allocated
// Buffer. At bulk rates that is one 64 KiB ArrayBuffer per read (16 KiB per
// TLS record), and V8 answers the external memory with frequent full
// garbage collections (README, Performance). Instead each socket reads into
// buffers taken from a shared pool (net's `onread` option); a buffer goes
// back to the pool when the write that carries it on has completed, which
// sockets report in order. Full buffers of one burst are written together
// (one writev) instead of one write each.
import { Socket, type OnReadOpts } from 'node:net';

/** Free buffers of one size, shared by every connection of the daemon. */
export class BufferPool {
  private readonly free: Buffer[] = [];

  /**
   * @param keep at most this many free buffers are kept; more go to the garbage collector.
   * @param maxInFlight buffers one direction of a connection may hold before its source stops reading (backpressure).
   */
  constructor(
    readonly size: number,
    private readonly keep: number,
    readonly maxInFlight: number,
  ) {}

  take(): Buffer {
    // allocUnsafeSlow: a buffer of its own memory. allocUnsafe slices sizes
    // below half of Buffer.poolSize from Node's shared pool (64 KiB since
    // nodejs/node#63597, in Node 24.21 here), and such a slice can never come
    // back to this pool, so every read would allocate anew.
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  give(buf: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buf);
  }

  get idle(): number {
    return this.free.length;
  }
}

/** Plaintext reads from the NFS client: up to 64 KiB, as net reads by default; 256 KiB in flight. */
export const PLAIN_POOL = new BufferPool(64 * 1024, 64, 4);
/**
 * Decrypted reads from the TLS socket: one record, at most 16 KiB, per read.
 * 8 in flight (128 KiB): with 4, a burst of records stalled before it could
 * be written as one (README, Performance).
 */
export const TLS_POOL = new BufferPool(16 * 1024, 256, 8);

export type ByteCounter = { [K in 'bytesUpstream' | 'bytesDownstream']: number };

/**
 * Reads of one source socket, written on to a destination. Counters are
 * plain numbers; the write callback is one bound function, not a closure
 * per chunk.
 */
export class Pipe {
  /** Pass as the source socket's `onread` option. */
  readonly onread: OnReadOpts;
  private src: Socket | null = null;
  private dst: Socket | null = null;
  /** The buffer the source will read into next. */
  private armed: Buffer | null = null;
  /** Buffers handed to dst.write, oldest first; write callbacks arrive in this order. */
  private readonly inFlight: Buffer[] = [];
  private stalled = false;
  /**
   * Reads land in this pool's buffers (`onread`), so every buffer in flight goes back to it. 'data' chunks
   * (`feed`) are Node's own and are left to the garbage collector. A flag rather than a look at each buffer's
   * ArrayBuffer: `buf.buffer` is a call into V8's C++ on every write (callgrind, README Performance).
   */
  private pooled = true;
  /** An end-of-burst uncork is scheduled (setImmediate). */
  private flushQueued = false;
  private readonly written = (): void => this.release();
  private readonly flush = (): void => {
    this.flushQueued = false;
    this.uncork();
  };

  constructor(
    private readonly pool: BufferPool,
    private readonly counters: ByteCounter,
    private readonly key: keyof ByteCounter,
  ) {
    this.onread = {
      buffer: () => (this.armed = this.pool.take()),
      callback: (n: number, buf: Uint8Array) => this.read(n, buf as Buffer),
    };
  }

  /** Start copying from src (which reads through `onread`) to dst. */
  connect(src: Socket, dst: Socket): void {
    this.src = src;
    this.dst = dst;
  }

  /** Start copying from a src that cannot take `onread`: its 'data' chunks go the same way. */
  feed(src: Socket, dst: Socket): void {
    this.connect(src, dst);
    this.pooled = false;
    src.on('data', (chunk: Buffer) => {
      if (!this.read(chunk.length, chunk)) src.pause();
    });
  }

  private read(n: number, buf: Buffer): boolean {
    this.counters[this.key] += n;
    this.inFlight.push(buf);
    const dst = this.dst as Socket;
    // A full buffer means the source had more ready (a TLS socket hands over
    // one record per read): hold the writes until the burst ends, at the
    // first read that is not full or, failing that, once the event loop has
    // read every ready socket (setImmediate). Small RPCs are never held.
    const full = n === this.pool.size;
    // Only this pipe corks dst, so its corked count says whether a burst is being held.
    if (full && !dst.writableCorked) {
      dst.cork();
      if (!this.flushQueued) {
        this.flushQueued = true;
        setImmediate(this.flush);
      }
    }
    dst.write(n === buf.length ? buf : buf.subarray(0, n), this.written);
    if (!full) this.uncork();
    if (this.inFlight.length < this.pool.maxInFlight) return true;
    this.stalled = true;
    return false; // net stops reading the source until resume()
  }

  private uncork(): void {
    const dst = this.dst as Socket;
    if (dst.writableCorked) dst.uncork();
  }

  private release(): void {
    const buf = this.inFlight.shift();
    if (buf && this.pooled) this.pool.give(buf);
    if (this.stalled && this.inFlight.length < this.pool.maxInFlight) {
      this.stalled = false;
      if (this.src && !this.src.destroyed) this.src.resume();
    }
  }

  /** The source has closed: its read buffer goes back to the pool (writes still in flight return theirs). */
  closed(): void {
    if (this.armed) this.pool.give(this.armed);
    this.armed = null;
  }
}

/**
 * An accepted connection rewrapped so that it reads into the pipe's buffers.
 * net offers `onread` only to sockets it creates, so the accepted socket's
 * handle moves to a new Socket before any byte is read (the server pauses new
 * connections); the old object is let go without closing the handle. If the
 * handle is not where Node 20 keeps it, the accepted socket is returned as is
 * and `adopted` is false: the caller copies with 'data' events instead.
 */
export function adoptAccepted(accepted: Socket, onread: OnReadOpts): { socket: Socket; adopted: boolean } {
  const internal = accepted as unknown as { _handle: { readStart?: unknown } | null };
  const handle = internal._handle;
  if (!handle || typeof handle.readStart !== 'function') return { socket: accepted, adopted: false };
  internal._handle = null;
  accepted.destroy(); // with no handle this only settles the server's connection count
  // `handle` is the option Node itself uses to wrap accepted and passed handles.
  const socket = new Socket({ handle, allowHalfOpen: true, onread } as ConstructorParameters<typeof Socket>[0]);
  socket.pause(); // the constructor starts reading; nothing is read until the TLS session is verified
  return { socket, adopted: true };
}
