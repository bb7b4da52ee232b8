import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PATHS, pathOrder, startService, SERVICE_PORT } from '../bench/paths.js';
import { table, targetResults } from '../bench/report.js';
import { byCategory, categoryOf, eventTotals, selfCosts, summaryGap } from '../bench/instructions.js';
import { Ganesha, requireNfs } from '../helpers/nfs.js';
import { BulkConnection, NfsFiles, RpcConnection, switchesBetween, threadSwitches } from '../bench/workloads.js';

describe('bench path order', () => {
  it('runs every path once per round, each first, second and last once over three rounds', () => {
    const rounds = [1, 2, 3].map(pathOrder);
    expect(rounds[0]).to.deep.equal(['plain', 'stunnel', 'relay']);
    for (const order of rounds) expect([...order].sort()).to.deep.equal([...PATHS].sort());
    for (let pos = 0; pos < PATHS.length; pos++) expect(rounds.map((o) => o[pos]).sort()).to.deep.equal([...PATHS].sort());
    expect(pathOrder(4)).to.deep.equal(rounds[0]);
  });
});

describe('bench idle wakeups', () => {
  it('reads the context switches of every thread of a live process, the main thread included', () => {
    const counts = threadSwitches(process.pid);
    expect(counts.has(String(process.pid))).to.equal(true);
    for (const n of counts.values()) expect(n).to.be.at.least(0);
  });

  it('counts only threads alive at the second reading, so a thread that ended never makes the count negative', () => {
    const before = new Map([['100', 50], ['101', 7], ['102', 3]]);
    const after = new Map([['100', 52], ['103', 4]]); // 101 and 102 ended; 103 started
    expect(switchesBetween(before, after)).to.equal(2 + 4);
  });
});

describe('bench RPC turns', () => {
  it('adds the round trips of every turn on one connection into one p50/p99, up to the total it was opened for', async () => {
    const service = await startService();
    try {
      const c = await RpcConnection.open(SERVICE_PORT, 200, 30, null);
      await c.turn(10);
      expect(c.result().roundTrips).to.equal(10);
      await c.turn(10);
      await c.turn(50); // only 10 are left of the 30
      c.close();
      const l = c.result();
      expect(l.roundTrips).to.equal(30);
      expect(l.p50us).to.be.greaterThan(0);
      expect(l.p99us).to.be.at.least(l.p50us);
      expect(l.cpuUsPerRoundTrip, 'no tunnel process to measure on the plain path').to.equal(null);
    } finally {
      await service.stop();
    }
  });

  it('fails a turn when the connection closes before its round trips are done, instead of waiting for replies', async () => {
    // A service that answers the uncounted first round trip, then closes at the next request.
    const server = createServer((sock) => {
      const first = 1 + 4 + 200; // 'R', then one request: length and 200 bytes
      let received = 0;
      sock.on('data', (d: Buffer) => {
        const before = received;
        received += d.length;
        if (received > first) sock.destroy();
        else if (before < first && received === first) sock.write(Buffer.alloc(200));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const c = await RpcConnection.open((server.address() as AddressInfo).port, 200, 30, null);
      let err: Error | null = null;
      await c.turn(10).catch((e: Error) => (err = e));
      c.close();
      expect(err, 'the turn rejects').to.be.an('error');
      expect(String(err)).to.contain('rpc connection closed after 0 of 10 round trips');
    } finally {
      server.close();
    }
  });
});

describe('bench bulk turns', () => {
  for (const direction of ['up', 'down'] as const) {
    it(`${direction}loads its total in slices, one per turn, and nothing more once the total is moved`, async () => {
      const service = await startService();
      try {
        const c = await BulkConnection.open(SERVICE_PORT, direction, 5 << 20, 2 << 20, null);
        await c.turn();
        expect(c.result().bytes).to.equal(2 << 20);
        await c.turn();
        await c.turn(); // the last 1 MiB
        await c.turn(); // nothing left
        c.close();
        const b = c.result();
        expect(b.bytes).to.equal(5 << 20);
        expect(b.mbPerSec).to.be.greaterThan(0);
        expect(b.cpuPerGiB, 'no tunnel process to measure on the plain path').to.equal(null);
      } finally {
        await service.stop();
      }
    });
  }
});

describe('bench NFS turns', function () {
  before(function () {
    requireNfs(this);
  });

  it('writes one file per turn through a path and reads each back, checked against what was written', async () => {
    const g = await Ganesha.get();
    const dir = mkdtempSync(join(tmpdir(), 'efs-relay-nfs-turns-'));
    try {
      const data = randomBytes(1 << 20);
      const src = { path: join(dir, 'src.bin'), bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
      writeFileSync(src.path, data);
      const name = (i: number): string => `nfs-turns-${process.pid}-${i}.bin`;
      const w = new NfsFiles('write', (i) => g.v3Url(name(i), g.nfsPort), src, 2);
      await w.turn();
      expect(w.result().bytes).to.equal(1 << 20);
      await w.turn();
      await w.turn(); // nothing left
      expect(readFileSync(join(g.exportPath, name(1))).equals(data), 'the file arrived whole').to.equal(true);
      const r = new NfsFiles('read', (i) => g.v4Url(name(i), g.nfsPort), src, 2);
      await r.turn();
      await r.turn();
      expect(r.result().bytes).to.equal(2 << 20);
      expect(r.result().mbPerSec).to.be.greaterThan(0);
      expect(r.result().cpuPerGiB, 'no tunnel process to measure on the plain path').to.equal(null);
      // A read that does not match what was written fails the bench rather than counting.
      writeFileSync(join(g.exportPath, name(0)), Buffer.alloc(1 << 20));
      const bad = new NfsFiles('read', (i) => g.v4Url(name(i), g.nfsPort), src, 1);
      let err: Error | null = null;
      await bad.turn().catch((e: Error) => (err = e));
      expect(String(err)).to.match(/nfs read of .* returned 1048576 bytes \(sha256 [0-9a-f]{64}\), not the 1048576 written/);
    } finally {
      for (const i of [0, 1]) rmSync(join(g.exportPath, `nfs-turns-${process.pid}-${i}.bin`), { force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bench targets', () => {
  it('judges each target in its figure\'s better direction: ratios as the table shows them, efs-relay\'s own figures as measured', () => {
    const t = targetResults({
      upload_mb_s: { plain: 3000, stunnel: 500, relay: 499 }, // 0.998 shows as 1.00
      download_mb_s: { plain: 3000, stunnel: 500, relay: 490 }, // 0.98
      upload_cpu_s_per_gib: { stunnel: 1.5, relay: 1.2 }, // 0.80
      rpc200_p99_us: { plain: 300, stunnel: 400, relay: 480 }, // 1.20
      idle_tunnels_rss_mib: { stunnel: 10000, relay: 151 },
      startup_s: { relay: 0.9 },
      rpc200_p50_us: { plain: 80, stunnel: 200, relay: 210 }, // no target
    });
    expect(Object.keys(t).sort()).to.deep.equal(['download_mb_s', 'idle_tunnels_rss_mib', 'rpc200_p99_us', 'startup_s', 'upload_cpu_s_per_gib', 'upload_mb_s']);
    expect(t.upload_mb_s).to.deep.equal({ target: 'relay/stunnel ≥ 1.0', value: 1, met: true });
    expect(t.download_mb_s).to.include({ value: 0.98, met: false });
    expect(t.upload_cpu_s_per_gib).to.deep.equal({ target: 'relay/stunnel ≤ 1.0', value: 0.8, met: true });
    expect(t.rpc200_p99_us).to.include({ met: false });
    expect(t.idle_tunnels_rss_mib).to.deep.equal({ target: 'efs-relay ≤ 150 MiB', value: 151, met: false });
    expect(t.startup_s).to.deep.equal({ target: 'efs-relay ≤ 2 s', value: 0.9, met: true });
  });

  it('prints the verdict on each targeted figure\'s line of the table and leaves the others blank', () => {
    const out = table({ rpc200_p99_us: { plain: 300, stunnel: 400, relay: 480 }, rpc200_p50_us: { plain: 80, stunnel: 200, relay: 210 } }, {});
    const lines = out.split('\n');
    expect(lines[0]).to.match(/ target$/);
    expect(lines.find((l) => l.startsWith('rpc200_p99_us'))).to.match(/ 1\.20 .* NOT met \(relay\/stunnel ≤ 1\.0\)$/);
    expect(lines.find((l) => l.startsWith('rpc200_p50_us'))).to.match(/ 1\.05 +- +2\.63$/);
  });
});

describe('bench instruction categories', () => {
  it('files each function of a callgrind profile under the code it belongs to, in node and in stunnel', () => {
    const cases: [string, string][] = [
      ['???:do_ssl3_write [/usr/bin/node]', 'OpenSSL'],
      ['???:SSL_write [/usr/lib/x86_64-linux-gnu/libssl.so.3]', 'OpenSSL'],
      ['???:EVP_CIPHER_CTX_ctrl [/usr/lib/x86_64-linux-gnu/libcrypto.so.3]', 'OpenSSL'],
      ['/home/iojs/build/ws/out/../deps/uv/src/unix/linux.c:uv__io_poll [/usr/bin/node]', 'libuv'],
      ['???:Builtins_LoadIC [/usr/bin/node]', 'V8'],
      ['???:v8::HandleScope::HandleScope(v8::Isolate*) [/usr/bin/node]', 'V8'],
      ['???:heap::base::ActiveSystemPages::Add(unsigned long, unsigned long, unsigned long) [/usr/bin/node]', 'V8'],
      ['???:node::crypto::TLSWrap::EncOut() [/usr/bin/node]', 'Node (C++)'],
      ['???:0x000000000d0ad040 [???]', 'JIT code'],
      ['./malloc/./malloc/malloc.c:_int_malloc [/usr/lib/x86_64-linux-gnu/libc.so.6]', 'libc'],
      ['???:0x000000000001ab70 [/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2]', 'libc'],
      ['???:0x000000000000d197 [/usr/bin/stunnel4]', 'stunnel'],
      ['???:0x0000000000000abc [/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30]', 'other'],
    ];
    for (const [fn, category] of cases) expect(categoryOf(fn), fn).to.equal(category);
  });

  it('adds up each function\'s self cost in a callgrind dump by category, leaving out the inclusive cost of calls, to the dump\'s totals', () => {
    const dump = [
      'version: 1', 'creator: callgrind-3.19.0', 'positions: line', 'events: Ir I1mr',
      'ob=(1) /usr/bin/node', 'fl=(1) ???', 'fn=(1) Builtins_LoadIC',
      '0 3000 10', '+1 307 2',
      // A call: its line after calls= is memcpy's inclusive cost, counted as memcpy's own below.
      'cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6', 'cfi=(2) ./string/memcpy.S', 'cfn=(2) memcpy', 'calls=2 0', '0 5000 7',
      'fn=(3) do_ssl3_write', '0 2000 1',
      // Inlined code stays its function's.
      'fi=(3) /home/iojs/build/ws/out/../deps/openssl/ssl/record/rec_layer_s3.c', '0 124 0', 'fe=(1)', '* 0 0',
      'ob=(2)', 'fl=(2)', 'fn=(2)', '0 5000 7',
      'ob=(3) ???', 'fl=(1)', 'fn=(4) 0x000000000d0ad040', '0 143 0',
      'totals: 10574 20', '',
    ].join('\n');
    const costs = selfCosts(dump);
    expect(costs.byFunction.get('???:Builtins_LoadIC [/usr/bin/node]')).to.deep.equal([3307, 12]);
    expect(costs.byFunction.get('./string/memcpy.S:memcpy [/usr/lib/x86_64-linux-gnu/libc.so.6]')).to.deep.equal([5000, 7]);
    const ir = byCategory(costs, 'Ir');
    expect(ir).to.deep.equal({ OpenSSL: 2124, libc: 5000, libuv: 0, 'Node (C++)': 0, V8: 3307, 'JIT code': 143, stunnel: 0, other: 0 });
    expect(Object.values(ir).reduce((a, b) => a + b, 0)).to.equal(eventTotals(dump).Ir);
    expect(Object.values(byCategory(costs, 'I1mr')).reduce((a, b) => a + b, 0)).to.equal(eventTotals(dump).I1mr);
  });

  it('reads the totals of every event from a callgrind dump, by the names its events line gives', () => {
    const dump = ['version: 1', 'creator: callgrind-3.19.0', 'events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim', 'fl=(1) x.c',
      '0 5 1 1 0 0 0 0 0 0 0 0 0 0', 'summary: 69726209 14772000 14880033 570635 439627 481797 772 210 364 10437055 378894 1140000 342053', ''].join('\n');
    const t = eventTotals(dump);
    expect(t.Ir).to.equal(69_726_209);
    expect(t.I1mr).to.equal(570_635);
    expect([t.D1mr, t.D1mw]).to.deep.equal([439_627, 481_797]);
    expect(t.Bim).to.equal(342_053);
    expect(eventTotals('events: Ir\ntotals: 42\n')).to.deep.equal({ Ir: 42 });
  });

  it('takes a dump\'s totals from its rows (totals:) where callgrind\'s summary: differs, and says by how much', () => {
    const dump = 'events: Ir I1mr\nsummary: 4672500 42966\nfl=(1) x.c\n0 4833364 42975\ntotals: 4833364 42975\n';
    expect(eventTotals(dump)).to.deep.equal({ Ir: 4_833_364, I1mr: 42_975 });
    expect(summaryGap(dump)).to.be.closeTo((4_672_500 - 4_833_364) / 4_833_364, 1e-12);
    expect(summaryGap('events: Ir\ntotals: 42\n')).to.equal(0);
  });
});
