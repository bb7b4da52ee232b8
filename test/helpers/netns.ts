// Network namespaces of the tests' own (ip netns, from iproute2), each with
// its loopback up and a peer process inside (netns-peer.ts): the stand-in
// "container" that netns= tunnels listen and connect in.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { tempDir } from './daemon.js';
import type { PeerAsk } from './netns-peer.js';
import { listening } from '../../cli/listeners.js';
import type { Pem } from './pki.js';

/** Why namespaces cannot be made here, or null when they can. */
export function namespacesUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'making network namespaces needs root';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    execFileSync('nsenter', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'ip (iproute2) or nsenter (util-linux) is not installed';
  }
  return null;
}

export class TestNamespace {
  readonly path: string;
  private peer: ChildProcess | null = null;
  private lines: Interface | null = null;
  /** The asks waiting for the peer's answer, in order; all fail if the peer ends. */
  private readonly answers: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = [];

  constructor(readonly name: string) {
    this.path = `/var/run/netns/${name}`;
  }

  create(): this {
    this.remove();
    execFileSync('ip', ['netns', 'add', this.name]);
    execFileSync('ip', ['-n', this.name, 'link', 'set', 'lo', 'up']);
    return this;
  }

  /** A mount target stand-in (echo) at host:port inside the namespace. */
  async startPeer(host: string, port: number, cert: Pem): Promise<void> {
    const file = join(tempDir('efs-relay-netns-'), 'peer.json');
    writeFileSync(file, JSON.stringify({ host, port, cert }));
    const peer = spawn('ip', ['netns', 'exec', this.name, process.execPath, join(import.meta.dirname, 'netns-peer.js'), file], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.peer = peer;
    this.lines = createInterface({ input: peer.stdout! });
    this.lines.on('line', (line) => this.answers.shift()?.resolve(line));
    peer.once('exit', (code) => {
      for (const a of this.answers.splice(0)) a.reject(new Error(`the namespace's peer exited with ${code}`));
    });
    const ready = await new Promise<string>((resolve, reject) => this.answers.push({ resolve, reject }));
    if (!(JSON.parse(ready) as { ready?: boolean }).ready) throw new Error(`the namespace's peer said ${ready}`);
  }

  private ask<T>(what: PeerAsk): Promise<T> {
    return new Promise((resolve, reject) => {
      this.answers.push({ resolve: (line) => resolve(JSON.parse(line) as T), reject });
      this.peer!.stdin!.write(JSON.stringify(what) + '\n');
    });
  }

  /** From inside the namespace: connect to its 127.0.0.1:port, send text, half-close, and collect the reply. */
  exchange(port: number, text: string): Promise<{ received: string; error: string | null }> {
    return this.ask({ op: 'exchange', port, text });
  }

  /** Listen on 127.0.0.1:port inside the namespace, as another program there would. */
  hold(port: number): Promise<unknown> {
    return this.ask({ op: 'hold', port });
  }

  /** What the namespace's mount target stand-in saw. */
  target(): Promise<{ handshakes: number; sessions: Array<{ protocol: string | null; cipher: string; servername: string | false }>; received: string }> {
    return this.ask({ op: 'target' });
  }

  /** Whether something listens on `port` inside the namespace (the peer's /proc/PID/net/tcp). */
  listening(port: number): Promise<boolean> {
    return listening(port, this.peer!.pid);
  }

  remove(): void {
    this.peer?.stdin?.end();
    this.peer?.kill();
    this.peer = null;
    try {
      execFileSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    } catch {
      // not there
    }
  }
}
