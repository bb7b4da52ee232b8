import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { adoptAccepted, BufferPool, Pipe } from '../../daemon/copy.js';

/** A loopback server that hashes everything it receives until the sender ends. */
function sink(): Promise<{ server: Server; port: number; digest: Promise<{ hex: string; bytes: number }> }> {
  return new Promise((resolve) => {
    let done!: (r: { hex: string; bytes: number }) => void;
    const digest = new Promise<{ hex: string; bytes: number }>((r) => (done = r));
    const server = createServer((s) => {
      const h = createHash('sha256');
      let bytes = 0;
      s.on('data', (d: Buffer) => {
        h.update(d);
        bytes += d.length;
      });
      s.on('end', () => {
        done({ hex: h.digest('hex'), bytes });
        s.end();
      });
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, digest }));
  });
}

async function send(port: number, payload: Buffer): Promise<void> {
  const c = connect({ host: '127.0.0.1', port });
  await new Promise((r) => c.once('connect', r));
  for (let off = 0; off < payload.length; off += 100_000) c.write(payload.subarray(off, off + 100_000));
  c.end();
}

/**
 * Accept one connection, copy it through a Pipe to the sink, and return what
 * the sink saw. `adopt` false copies the accepted socket with 'data' events.
 */
async function relayOnce(payload: Buffer, adopt: boolean, pool: BufferPool) {
  const out = await sink();
  const counters = { bytesUpstream: 0, bytesDownstream: 0 };
  const pipe = new Pipe(pool, counters, 'bytesUpstream');
  let adopted: boolean | null = null;
  const front = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (accepted) => {
    const r = adopt ? adoptAccepted(accepted, pipe.onread) : { socket: accepted, adopted: false };
    adopted = r.adopted;
    const dst = connect({ host: '127.0.0.1', port: out.port });
    if (r.adopted) pipe.connect(r.socket, dst);
    else pipe.feed(r.socket, dst);
    r.socket.on('end', () => dst.end());
    r.socket.on('close', () => pipe.closed());
    r.socket.resume();
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
  await send((front.address() as AddressInfo).port, payload);
  const seen = await out.digest;
  front.close();
  out.server.close();
  return { seen, adopted, counters };
}

describe('copying with pooled read buffers', () => {
  const payload = randomBytes(8 << 20);
  const want = createHash('sha256').update(payload).digest('hex');

  it('reads an accepted connection into pooled buffers and delivers every byte in order', async () => {
    const pool = new BufferPool(64 * 1024, 16, 4);
    const { seen, adopted, counters } = await relayOnce(payload, true, pool);
    expect(adopted).to.equal(true);
    expect(seen.bytes).to.equal(payload.length);
    expect(seen.hex).to.equal(want);
    expect(counters.bytesUpstream).to.equal(payload.length);
    // Buffers came back once their writes completed, so the next connection reuses them.
    expect(pool.idle).to.be.greaterThan(0);
  });

  it('copies with data events, byte for byte, when a socket cannot be adopted', async () => {
    const bare = new Socket(); // never connected: no handle to move
    const r = adoptAccepted(bare, new Pipe(new BufferPool(1024, 1, 4), { bytesUpstream: 0, bytesDownstream: 0 }, 'bytesUpstream').onread);
    expect(r.adopted).to.equal(false);
    expect(r.socket).to.equal(bare);
    const pool = new BufferPool(64 * 1024, 16, 4);
    const { seen, counters } = await relayOnce(payload, false, pool);
    expect(seen.hex).to.equal(want);
    expect(counters.bytesUpstream).to.equal(payload.length);
    expect(pool.idle, "Node's own 'data' chunks are left to the garbage collector, not kept in the pool").to.equal(0);
  });

  it('delivers a burst that ends on a full buffer at once, without waiting for more bytes or the end', async () => {
    // 1 KiB buffers and 64 KiB sent in one write: every read is full, so only the end-of-burst flush can send the last ones.
    const pool = new BufferPool(1024, 8, 8);
    const pipe = new Pipe(pool, { bytesUpstream: 0, bytesDownstream: 0 }, 'bytesUpstream');
    const burst = randomBytes(64 * 1024);
    let received = Buffer.alloc(0);
    let gotAll!: () => void;
    const all = new Promise<void>((r) => (gotAll = r));
    const back = createServer((s) =>
      s.on('data', (d: Buffer) => {
        received = Buffer.concat([received, d]);
        if (received.length === burst.length) gotAll();
      }),
    );
    await new Promise<void>((r) => back.listen(0, '127.0.0.1', () => r()));
    const front = createServer({ pauseOnConnect: true }, (accepted) => {
      const { socket } = adoptAccepted(accepted, pipe.onread);
      const dst = connect({ host: '127.0.0.1', port: (back.address() as AddressInfo).port });
      pipe.connect(socket, dst);
      socket.resume();
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()));
    const c = connect({ host: '127.0.0.1', port: (front.address() as AddressInfo).port });
    c.write(burst); // and the connection stays open
    const timeout = new Promise<string>((r) => setTimeout(() => r(`only ${received.length} of ${burst.length} bytes arrived`), 5_000).unref());
    expect(await Promise.race([all.then(() => 'all'), timeout])).to.equal('all');
    expect(received.equals(burst)).to.equal(true);
    c.destroy();
    front.close();
    back.close();
  });

  it('reuses its 16 KiB buffers even where Node slices buffers that size from its shared pool (Buffer.poolSize 64 KiB, as on Node 24.21)', async () => {
    // A buffer sliced from Node's shared pool can never come back to ours, so
    // every read would allocate anew: on Node 24 that ran a full garbage
    // collection every few MiB of download (README, Performance).
    const saved = Buffer.poolSize;
    Buffer.poolSize = 64 * 1024;
    try {
      const pool = new BufferPool(16 * 1024, 256, 8);
      const b = pool.take();
      expect(b.byteOffset, 'a buffer of its own memory').to.equal(0);
      expect(b.buffer.byteLength).to.equal(16 * 1024);
      pool.give(b);
      const { seen } = await relayOnce(payload, true, pool);
      expect(seen.hex).to.equal(want);
      expect(pool.idle, 'buffers came back to the pool after their writes').to.be.greaterThan(1);
    } finally {
      Buffer.poolSize = saved;
    }
  });

  it('keeps at most its limit of free buffers, so a burst does not pin memory', () => {
    const pool = new BufferPool(1024, 2, 4);
    const taken = [pool.take(), pool.take(), pool.take(), pool.take()];
    expect(taken.every((b) => b.length === 1024)).to.equal(true);
    for (const b of taken) pool.give(b);
    expect(pool.idle).to.equal(2);
  });
});
