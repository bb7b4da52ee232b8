// A DNS server on a loopback address, for a daemon whose resolver points at
// it (see Daemon's `resolver`): A and CNAME records from tables, NXDOMAIN for
// other names, no AAAA records. A question for an alias is answered as a
// recursive resolver does: its CNAME chain, then the address it ends at.
// `mode` turns it silent (drops every query, as a resolver that is down or
// throttles) or makes it answer SERVFAIL.
import { createSocket, type Socket } from 'node:dgram';

const TYPE_A = 1;
const TYPE_CNAME = 5;
const RCODE = { ok: 0, servfail: 2, nxdomain: 3 } as const;

export class DnsServer {
  /** name (lower case, no trailing dot) → IPv4 address */
  readonly names = new Map<string, string>();
  /** alias (lower case, no trailing dot) → the name its CNAME record gives */
  readonly cnames = new Map<string, string>();
  mode: 'answer' | 'silent' | 'servfail' = 'answer';
  /** Every query received: name and type. */
  readonly queries: Array<{ name: string; type: number }> = [];
  /** When the last query was dropped unanswered (Date.now()), or 0. */
  lastDroppedAt = 0;
  private sock: Socket | null = null;

  constructor(readonly host: string) {}

  async start(): Promise<this> {
    const sock = createSocket('udp4');
    sock.on('message', (msg, from) => {
      const reply = this.answer(msg);
      if (reply) sock.send(reply, from.port, from.address);
    });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(53, this.host, () => resolve());
    });
    this.sock = sock;
    return this;
  }

  async stop(): Promise<void> {
    const sock = this.sock;
    this.sock = null;
    if (sock) await new Promise<void>((r) => sock.close(() => r()));
  }

  /** Queries for `name` so far (A and AAAA alike). */
  asked(name: string): number {
    return this.queries.filter((q) => q.name === name).length;
  }

  private answer(msg: Buffer): Buffer | null {
    if (msg.length < 12) return null;
    // The question: labels up to a zero byte, then type and class.
    const labels: string[] = [];
    let at = 12;
    while (at < msg.length && msg[at] !== 0) {
      const len = msg[at]!;
      labels.push(msg.subarray(at + 1, at + 1 + len).toString('latin1'));
      at += 1 + len;
    }
    const questionEnd = at + 5;
    if (questionEnd > msg.length) return null;
    const name = labels.join('.').toLowerCase();
    const type = msg.readUInt16BE(at + 1);
    this.queries.push({ name, type });
    if (this.mode === 'silent') {
      this.lastDroppedAt = Date.now();
      return null;
    }

    // The records: the CNAME chain from the name (only its first for a CNAME question), then the address it ends at.
    const records: Buffer[] = [];
    let owner = name;
    const seen = new Set<string>();
    while (this.cnames.has(owner) && !seen.has(owner)) {
      seen.add(owner);
      const next = this.cnames.get(owner)!;
      records.push(record(owner, TYPE_CNAME, encodeName(next)));
      owner = next;
      if (type === TYPE_CNAME) break;
    }
    const address = type === TYPE_CNAME && records.length > 0 ? undefined : this.names.get(owner);
    const known = records.length > 0 || address !== undefined;
    const rcode = this.mode === 'servfail' ? RCODE.servfail : known ? RCODE.ok : RCODE.nxdomain;
    if (rcode === RCODE.ok && type === TYPE_A && address !== undefined) {
      records.push(record(owner, TYPE_A, Buffer.from(address.split('.').map(Number))));
    }
    const answers = rcode === RCODE.ok ? records : [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0); // the query's id
    header.writeUInt16BE(0x8180 | rcode, 2); // a response, recursion desired and available
    header.writeUInt16BE(1, 4); // the question, echoed
    header.writeUInt16BE(answers.length, 6);
    return Buffer.concat([header, msg.subarray(12, questionEnd), ...answers]);
  }
}

/** A name as DNS writes it: length-prefixed labels and a zero byte (no compression). */
function encodeName(name: string): Buffer {
  return Buffer.concat([...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

/** One answer record of class IN with a TTL of 5 s. */
function record(owner: string, type: number, data: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(1, 2); // class IN
  fixed.writeUInt32BE(5, 4); // TTL
  fixed.writeUInt16BE(data.length, 8);
  return Buffer.concat([encodeName(owner), fixed, data]);
}
