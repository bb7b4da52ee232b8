// Relay behaviour against a TLS echo server: half-close, large transfers,
// tiny writes, many connections, resets, backpressure, and no leaked fds.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { commandMissing, Daemon, run, skipIf, waitFor } from './helpers/daemon.js';
import { exchange, openClient } from './helpers/client.js';
import { FS_ID, daemonConfig, testCerts } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import type { AddResult, TunnelView } from '../daemon/tunnels.js';

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

describe('relay behaviour', function () {
  let daemon: Daemon;
  let target: MountTargetStandIn;
  let port: number;
  let baselineFds: number;

  const tunnel = async (): Promise<TunnelView> =>
    (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === FS_ID)!;

  before(async () => {
    target = await new MountTargetStandIn({ host: '127.0.0.6', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    daemon = await new Daemon(daemonConfig(20300)).start();
    const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.6,region=us-east-1');
    port = add.tunnel.port;
    // One connection first, so lazily opened resources (DNS, TLS) are in the baseline.
    await exchange(port, 'warm-up');
    await waitFor('warm-up connection closed', async () => (await tunnel()).connections.active === 0);
    baselineFds = await daemon.fdCountAtRest();
  });

  after(async () => {
    await daemon?.stop();
    await target?.stop();
  });

  it('passes a half-close on and lets the return traffic drain', async () => {
    // The echo server answers our FIN with a trailer, then its own FIN.
    const r = await exchange(port, 'request-then-fin');
    expect(r.error).to.equal(null);
    expect(r.received.toString()).to.equal('request-then-fin' + ECHO_TRAILER);
  });

  it('relays an interactive exchange in both directions before either side closes', async () => {
    const sock = await openClient(port);
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    sock.write('first');
    await waitFor('first echo', () => Buffer.concat(got).toString() === 'first');
    sock.write('second');
    await waitFor('second echo', () => Buffer.concat(got).toString() === 'firstsecond');
    sock.end();
    await new Promise((r) => sock.on('close', r));
    expect(Buffer.concat(got).toString()).to.equal('firstsecond' + ECHO_TRAILER);
  });

  it('moves 1 GiB each way at once on one connection, byte for byte', async () => {
    const block = randomBytes(1 << 20);
    const blocks = 1024;
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let received = 0;
    const sock = await openClient(port);
    const done = new Promise<void>((resolve, reject) => {
      sock.on('data', (d: Buffer) => {
        received += d.length;
        got.update(d);
      });
      sock.on('end', () => resolve());
      sock.on('error', reject);
    });
    for (let i = 0; i < blocks; i++) {
      const chunk = Buffer.from(block);
      chunk.writeUInt32BE(i, 0); // every block differs, so a reordering would show
      sent.update(chunk);
      if (!sock.write(chunk)) await new Promise<void>((r) => sock.once('drain', () => r()));
    }
    sock.end();
    await done;
    const trailer = Buffer.from(ECHO_TRAILER);
    sent.update(trailer);
    expect(received).to.equal(blocks * block.length + trailer.length);
    expect(got.digest('hex')).to.equal(sent.digest('hex'));
    const t = await tunnel();
    expect(t.bytes.upstream).to.be.at.least(1 << 30);
    expect(t.bytes.downstream).to.be.at.least(1 << 30);
  });

  it('carries 100,000 one-byte writes in order', async () => {
    const sock = await openClient(port);
    sock.setNoDelay(true);
    const got: Buffer[] = [];
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('data', (d: Buffer) => got.push(d));
    sock.on('end', () => sock.end());
    const expected = Buffer.alloc(100_000);
    for (let i = 0; i < 100_000; i++) {
      expected[i] = 33 + (i % 90);
      if (!sock.write(expected.subarray(i, i + 1))) await new Promise<void>((r) => sock.once('drain', () => r()));
    }
    sock.end();
    await closed;
    expect(Buffer.concat(got).equals(Buffer.concat([expected, Buffer.from(ECHO_TRAILER)]))).to.equal(true);
  });

  it('serves 200 concurrent connections on one tunnel, each getting its own bytes back', async () => {
    const socks: Socket[] = await Promise.all(Array.from({ length: 200 }, () => openClient(port)));
    const got = socks.map(() => [] as Buffer[]);
    socks.forEach((s, i) => {
      s.on('data', (d: Buffer) => got[i]!.push(d));
      s.on('end', () => s.end());
      s.write(`connection-${i}:`);
    });
    await waitFor('200 active connections', async () => (await tunnel()).connections.active === 200, 15_000);
    const closed = socks.map((s) => new Promise<void>((r) => s.on('close', () => r())));
    socks.forEach((s, i) => s.end(`payload-${i}`));
    await Promise.all(closed);
    got.forEach((chunks, i) => expect(Buffer.concat(chunks).toString()).to.equal(`connection-${i}:payload-${i}${ECHO_TRAILER}`));
  });

  it('closes the server side when the client resets', async () => {
    const before = target.openSockets;
    const sock = await openClient(port);
    sock.write('x');
    await waitFor('server side open', () => target.openSockets > before);
    sock.resetAndDestroy();
    await waitFor('server side closed', () => target.openSockets === before);
    await waitFor('tunnel idle', async () => (await tunnel()).connections.active === 0);
  });

  it('closes the client when the server resets', async () => {
    const sock = await openClient(port);
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    let echoed = '';
    let clientError = '';
    sock.on('data', (d: Buffer) => (echoed += d.toString()));
    sock.on('error', (e: NodeJS.ErrnoException) => (clientError = e.code ?? ''));
    sock.write('x');
    await waitFor('the echo, so the session is up', () => echoed === 'x');
    target.resetAll();
    await closed;
    expect(clientError, 'the reset is passed on as a reset').to.equal('ECONNRESET');
    await waitFor('tunnel idle', async () => (await tunnel()).connections.active === 0);
  });

  it('applies backpressure: a client that does not read stalls the sender instead of filling daemon memory', async () => {
    const sock = await openClient(port);
    sock.pause(); // read nothing: the echo fills up and must push back all the way
    const chunk = randomBytes(1 << 20);
    const rssBefore = rssBytes(daemon.pid);
    for (let i = 0; i < 512; i++) sock.write(chunk);
    await waitFor('the relay to stop taking data', async () => {
      const before = sock.writableLength;
      await new Promise((r) => setTimeout(r, 300));
      return sock.writableLength === before;
    }, 20_000);
    // Most of the 512 MiB is still queued in this client, not in the daemon.
    expect(sock.writableLength).to.be.greaterThan(400 << 20);
    expect(rssBytes(daemon.pid) - rssBefore).to.be.lessThan(64 << 20);
    let received = 0;
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('data', (d: Buffer) => (received += d.length));
    sock.on('end', () => sock.end());
    sock.end();
    sock.resume();
    await closed;
    expect(received).to.equal(512 * (1 << 20) + ECHO_TRAILER.length);
  });

  it('turns on TCP keep-alive on both sockets of a connection (seen by ss)', async function () {
    skipIf(this, await commandMissing('ss', 'apt-get install iproute2'));
    const sock = await openClient(port);
    let echoed = '';
    sock.on('data', (d: Buffer) => (echoed += d.toString()));
    sock.write('k');
    await waitFor('the session', () => echoed === 'k');
    // The daemon's two sockets: the accepted one (local port = tunnel port) and the upstream one (to 127.0.0.6:2049).
    const ss = (await run('ss', ['-tnoH', 'state', 'established'])).stdout.split('\n');
    const accepted = ss.find((l) => new RegExp(`127\\.0\\.0\\.1:${port}\\s+127\\.0\\.0\\.1:${sock.localPort}\\b`).test(l));
    const upstream = ss.find((l) => /\s127\.0\.0\.6:2049\b/.test(l) && !/127\.0\.0\.6:2049\s+127/.test(l));
    expect(accepted, 'accepted socket listed').to.be.a('string');
    expect(upstream, 'upstream socket listed').to.be.a('string');
    expect(accepted).to.match(/timer:\(keepalive,/);
    expect(upstream).to.match(/timer:\(keepalive,/);
    sock.destroy();
  });

  it('returns to its starting number of open file descriptors once every connection has ended', async () => {
    await waitFor('tunnel idle', async () => (await tunnel()).connections.active === 0);
    // A leaked fd keeps every sample above the baseline; a passing one (the /proc/mounts read) does not.
    await waitFor(`fds back to ${baselineFds}`, () => daemon.fdCount() <= baselineFds, 5_000);
  });
});
