// Runs inside a test network namespace (started by netns.ts with `ip netns
// exec`): a mount target stand-in on that namespace's loopback, and clients of
// that namespace's 127.0.0.1 ports, as an NFS client in a container would be.
// The test asks one JSON line at a time on stdin and reads one line back.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { exchange } from './client.js';
import { MountTargetStandIn } from './mount-target.js';
import type { Pem } from './pki.js';

export type PeerAsk = { op: 'exchange'; port: number; text: string } | { op: 'target' } | { op: 'hold'; port: number };

const cfg = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as { host: string; port: number; cert: Pem };
const target = await new MountTargetStandIn({ host: cfg.host, port: cfg.port, cert: cfg.cert, backend: 'echo' }).start();
const reply = (v: unknown): boolean => process.stdout.write(JSON.stringify(v) + '\n');
reply({ ready: true });
for await (const line of createInterface({ input: process.stdin })) {
  const ask = JSON.parse(line) as PeerAsk;
  if (ask.op === 'exchange') {
    const r = await exchange(ask.port, ask.text, { timeoutMs: 10_000 });
    reply({ received: r.received.toString(), error: r.error });
  } else if (ask.op === 'hold') {
    // Another program of the namespace's on a port.
    const held = createServer();
    // A port taken already is the asker's to see (an unhandled error would end the peer, and every later ask wait).
    held.once('error', (err: NodeJS.ErrnoException) => reply({ error: err.code ?? err.message }));
    held.listen(ask.port, '127.0.0.1', () => reply({ held: ask.port }));
  } else {
    reply({ handshakes: target.handshakes, sessions: target.sessions, received: Buffer.concat(target.received).toString() });
  }
}
await target.stop();
