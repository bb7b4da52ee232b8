// A DNS server on a loopback address, for a daemon whose resolver points at
// it (see Daemon's `resolver`): A records from a table, NXDOMAIN for other
// names, no AAAA records. `mode` turns it silent (drops every query, as a
// resolver that is down or throttles) or makes it answer SERVFAIL.
import { createSocket, type Socket } from 'node:dgram';

const TYPE_A = 1;
const RCODE = { ok: 0, servfail: 2, nxdomain: 3 } as const;

export class DnsServer {
  /** name (lower case, no trailing dot) → IPv4 address */
  readonly names = new Map<string, string>();
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

    const address = this.names.get(name);
    const rcode = this.mode === 'servfail' ? RCODE.servfail : address === undefined ? RCODE.nxdomain : RCODE.ok;
    const withRecord = rcode === RCODE.ok && type === TYPE_A;
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0); // the query's id
    header.writeUInt16BE(0x8180 | rcode, 2); // a response, recursion desired and available
    header.writeUInt16BE(1, 4); // the question, echoed
    header.writeUInt16BE(withRecord ? 1 : 0, 6);
    const parts = [header, msg.subarray(12, questionEnd)];
    if (withRecord) {
      const record = Buffer.alloc(16);
      record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
      record.writeUInt16BE(TYPE_A, 2);
      record.writeUInt16BE(1, 4); // class IN
      record.writeUInt32BE(5, 6); // TTL
      record.writeUInt16BE(4, 10);
      address!.split('.').forEach((octet, i) => record.writeUInt8(Number(octet), 12 + i));
      parts.push(record);
    }
    return Buffer.concat(parts);
  }
}
