// Mount targets found by their DNS name, as on a host without mounttargetip=:
// the daemon runs with a resolver of its own (a mount namespace whose
// /etc/resolv.conf names the test's DNS server), and the names point at
// TLS stand-ins on loopback.
import { expect } from 'chai';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { exchange } from './helpers/client.js';
import { BIN, Daemon, escapeRegExp, inOwnResolver, ownResolverUnavailable, RESOLVER_TIMEOUT_S, run, skipIf, sleep, waitFor } from './helpers/daemon.js';
import { DnsServer } from './helpers/dns-server.js';
import { certFor, daemonConfig, REGION } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import type { AddResult, TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import type { DoctorReport } from '../cli/doctor.js';

const DNS_HOST = '127.0.0.63';
const TARGET_HOST = '127.0.0.64';
const METRICS = '127.0.0.1:19815';
const nameOf = (fsId: string): string => `${fsId}.efs.${REGION}.amazonaws.com`;

describe('Mount targets by DNS name', function () {
  this.timeout(60_000);
  let daemon: Daemon;
  let dns: DnsServer;
  let target: MountTargetStandIn | null = null;

  before(async function () {
    skipIf(this, await ownResolverUnavailable());
    dns = await new DnsServer(DNS_HOST).start();
    daemon = await new Daemon(daemonConfig(24200, {
      relay: { connect_timeout: 3, close_timeout: 5 },
      metrics: { listen: METRICS },
    })).start(undefined, DNS_HOST);
  });
  after(async () => {
    await daemon?.stop();
    await dns?.stop();
  });
  afterEach(async () => {
    if (!dns) return; // the suite was skipped
    dns.mode = 'answer';
    await target?.stop();
    target = null;
    // A lookup that DNS left unanswered holds one of the two lookups libuv runs at once until the resolver gives up:
    // the next test starts with both free.
    const busyUntil = dns.lastDroppedAt + RESOLVER_TIMEOUT_S * 1000 + 200;
    if (Date.now() < busyUntil) await sleep(busyUntil - Date.now());
  });

  /** A tunnel for `fsId` with no mounttargetip, and a stand-in at TARGET_HOST that DNS names for it. */
  async function tunnelByName(fsId: string, cert = certFor(nameOf(fsId))): Promise<number> {
    dns.names.set(nameOf(fsId), TARGET_HOST);
    target = await new MountTargetStandIn({ host: TARGET_HOST, port: 2049, cert, backend: 'echo' }).start();
    const add = await daemon.efsctlJson<AddResult>('add', fsId, '-o', `region=${REGION}`);
    expect(add.tunnel.target.address).to.equal(nameOf(fsId));
    return add.tunnel.port;
  }

  const status = (fsId: string): Promise<TunnelDetail> => daemon.efsctlJson<TunnelDetail>('status', fsId);
  const logLines = (event: string, fsId: string): string[] =>
    daemon.logs.split('\n').filter((l) => new RegExp(` ${escapeRegExp(event)} fs=${fsId} `).test(l));
  async function fallbacks(fsId: string): Promise<number> {
    const value = await daemon.scrapedValue(`efs_relay_dns_fallbacks_total{fs_id="${fsId}"}`);
    if (value === undefined) throw new Error(`no efs_relay_dns_fallbacks_total for ${fsId} in the scrape`);
    return Number(value);
  }

  it('reaches the mount target that DNS names for the file system when no mounttargetip is given, verified against that name with SNI, and efsctl status shows DNS\'s answer', async () => {
    const fsId = 'fs-0000d001';
    const port = await tunnelByName(fsId);
    const r = await exchange(port, 'over DNS');
    expect(r.received.toString()).to.equal('over DNS' + ECHO_TRAILER);
    expect(target!.sessions.map((s) => s.servername)).to.deep.equal([nameOf(fsId)]);
    expect(dns.asked(nameOf(fsId))).to.be.greaterThan(0);
    expect((await daemon.efsctl('list')).stdout).to.match(new RegExp(`${fsId} +${port} +${escapeRegExp(nameOf(fsId))}:2049 `));
    // status shows where DNS sends the connections; a tunnel under mounttargetip= has no DNS to show.
    const s = await status(fsId);
    expect(s.dns?.addresses).to.deep.equal([TARGET_HOST]);
    expect(Date.parse(s.dns?.answered_at ?? '')).to.be.within(Date.now() - 60_000, Date.now());
    expect((await daemon.efsctl('status', fsId)).stdout).to.match(new RegExp(`^DNS answer: +${escapeRegExp(TARGET_HOST)} at \\S+$`, 'm'));
    const byAddress = 'fs-0000d0a1';
    expect((await daemon.efsctl('add', byAddress, '-o', `mounttargetip=${TARGET_HOST},region=${REGION}`)).code).to.equal(0);
    expect(await status(byAddress)).to.not.have.property('dns');
    expect((await daemon.efsctl('status', byAddress)).stdout).to.not.include('DNS answer');
    expect((await daemon.efsctl('stop', byAddress)).code).to.equal(0);
  });

  it('asks DNS for the zone\'s name of the file system under az=, and verifies the certificate for the file system\'s name, as efs-utils does', async () => {
    const fsId = 'fs-0000d0b1';
    const zoneName = `${REGION}a.${nameOf(fsId)}`;
    dns.names.set(zoneName, TARGET_HOST);
    // A certificate for every file system of the region: it covers the file system's name, not the zone's.
    target = await new MountTargetStandIn({ host: TARGET_HOST, port: 2049, cert: certFor(`*.efs.${REGION}.amazonaws.com`), backend: 'echo' }).start();
    const add = await daemon.efsctlJson<AddResult>('add', fsId, '-o', `region=${REGION},az=${REGION}a`);
    expect(add.tunnel.target).to.deep.include({ dns_name: zoneName, cert_name: nameOf(fsId), address: zoneName });
    const r = await exchange(add.tunnel.port, 'over the zone');
    expect(r.received.toString()).to.equal('over the zone' + ECHO_TRAILER);
    expect(target.sessions.map((s) => s.servername)).to.deep.equal([nameOf(fsId)]);
    expect(dns.asked(zoneName)).to.be.greaterThan(0);
    expect((await status(fsId)).last_error).to.equal(null);
    expect((await daemon.efsctl('stop', fsId)).code).to.equal(0);
  });

  it('takes the address from /etc/hosts when it names the file system, as efs-utils users do for a mount target in another VPC, without asking DNS', async () => {
    const fsId = 'fs-0000d0c1';
    // The daemon's /etc/hosts is this file, bind-mounted; the resolver reads it at every lookup.
    appendFileSync(join(daemon.dir, 'hosts'), `${TARGET_HOST} ${nameOf(fsId)}\n`);
    target = await new MountTargetStandIn({ host: TARGET_HOST, port: 2049, cert: certFor(nameOf(fsId)), backend: 'echo' }).start();
    const port = (await daemon.efsctlJson<AddResult>('add', fsId, '-o', `region=${REGION}`)).tunnel.port;
    expect((await exchange(port, 'from hosts')).received.toString()).to.equal('from hosts' + ECHO_TRAILER);
    expect(dns.asked(nameOf(fsId))).to.equal(0);
    expect((await status(fsId)).dns?.addresses).to.deep.equal([TARGET_HOST]);
  });

  it('keeps taking connections to the address of DNS\'s last answer while DNS does not answer, says so once in the log, in status and in efs_relay_dns_fallbacks_total, and says when DNS answers again', async () => {
    const fsId = 'fs-0000d002';
    const port = await tunnelByName(fsId);
    expect((await exchange(port, 'before')).received.toString()).to.equal('before' + ECHO_TRAILER);
    expect(await fallbacks(fsId)).to.equal(0);

    dns.mode = 'silent';
    for (const text of ['during 1', 'during 2']) expect((await exchange(port, text)).received.toString()).to.equal(text + ECHO_TRAILER);
    const lines = logLines('tunnel.dns_fallback', fsId);
    expect(lines, daemon.logs).to.have.length(1);
    expect(lines[0]).to.include('code=DNS_FAILED').and.include(`DNS gave no answer for ${nameOf(fsId)}`).and.include(`connecting to ${TARGET_HOST}`);
    const s = await status(fsId);
    expect(s.last_error?.code).to.equal('DNS_FAILED');
    expect(s.last_error?.message).to.include(`The certificate is still verified against ${nameOf(fsId)}`);
    expect(s.connections).to.deep.equal({ active: 0, ok: 3, failed: 0 });
    expect(await fallbacks(fsId)).to.equal(2);
    // The first a full handshake for the name; the others resumed its session, which only that server holds.
    expect(target!.sessions.map((x) => x.resumed ?? false)).to.deep.equal([false, true, true]);
    expect(target!.sessions[0]!.servername).to.equal(nameOf(fsId));

    // A connection may still join the question asked while DNS was silent (it gives up after resolv.conf's 5 s),
    // and go to the last answer once more; the first question after it gets DNS's answer.
    dns.mode = 'answer';
    await waitFor('tunnel.dns_answered in the log', async () => {
      expect((await exchange(port, 'after')).received.toString()).to.equal('after' + ECHO_TRAILER);
      return logLines('tunnel.dns_answered', fsId).length === 1;
    }, 15_000);
    expect(logLines('tunnel.dns_answered', fsId)[0]).to.include(`msg="DNS answers for ${nameOf(fsId)} again"`).and.include(`address=${TARGET_HOST}`);
    const settled = await fallbacks(fsId);
    expect((await exchange(port, 'after')).received.toString()).to.equal('after' + ECHO_TRAILER);
    expect(await fallbacks(fsId)).to.equal(settled);
  });

  it('keeps DNS\'s last answer in the tunnel\'s record, so that a daemon restarted while DNS does not answer still reaches the mount target', async () => {
    const fsId = 'fs-0000d0e1';
    const port = await tunnelByName(fsId);
    expect((await exchange(port, 'before')).received.toString()).to.equal('before' + ECHO_TRAILER);
    const kept = await waitFor('the answer in the record', () => daemon.record(fsId).dns_answer);
    expect(kept).to.deep.include({ name: nameOf(fsId), addresses: [TARGET_HOST] });

    await daemon.stop();
    dns.mode = 'silent';
    await daemon.start(undefined, DNS_HOST);
    expect((await exchange(port, 'after a restart')).received.toString()).to.equal('after a restart' + ECHO_TRAILER);
    expect((await status(fsId)).dns).to.deep.equal({ addresses: [TARGET_HOST], answered_at: kept.answered_at });
    expect(logLines('tunnel.dns_fallback', fsId)[0]).to.include(`connecting to ${TARGET_HOST}, its answer of `);
    expect(target!.sessions.at(-1)!.servername, 'still verified against the name').to.equal(nameOf(fsId));
  });

  it('still refuses, at the address of DNS\'s last answer, a server that cannot prove the file system name', async () => {
    const fsId = 'fs-0000d003';
    const port = await tunnelByName(fsId);
    expect((await exchange(port, 'x')).received.toString()).to.equal('x' + ECHO_TRAILER);
    await target!.stop();
    target = await new MountTargetStandIn({ host: TARGET_HOST, port: 2049, cert: certFor(nameOf('fs-0000d0ff')), backend: 'echo' }).start();

    dns.mode = 'servfail';
    const r = await exchange(port, 'SECRET');
    expect(r.received.toString()).to.equal('');
    expect(target.received).to.deep.equal([]);
    const s = await status(fsId);
    expect(s.last_error?.code).to.equal('TLS_HOSTNAME_MISMATCH');
    expect(s.connections.failed).to.equal(1);
    expect(await fallbacks(fsId)).to.equal(1);
  });

  it('says DNS_FAILED, not CONNECT_TIMEOUT, when DNS has not answered for a new tunnel by the connect timeout', async () => {
    const fsId = 'fs-0000d004';
    dns.mode = 'silent';
    const port = await tunnelByName(fsId);
    const r = await exchange(port, 'SECRET');
    expect(r.received.toString()).to.equal('');
    const s = await status(fsId);
    expect(s.last_error?.code).to.equal('DNS_FAILED');
    expect(s.last_error?.message).to.equal(`DNS has not answered for ${nameOf(fsId)} after 3000 ms`);
    expect(target!.handshakes).to.equal(0);
  });

  it('connects once a resolver that was not running yet answers, asking again within the connect timeout, as for a mount at boot', async () => {
    const fsId = 'fs-0000d009';
    await dns.stop(); // nothing listens on the resolver's port: each lookup fails at once (EAI_AGAIN)
    const port = await tunnelByName(fsId);
    const pending = exchange(port, 'at boot');
    await sleep(1_500);
    await dns.start();
    expect((await pending).received.toString()).to.equal('at boot' + ECHO_TRAILER);
    expect((await status(fsId)).connections).to.deep.equal({ active: 0, ok: 1, failed: 0 });
    expect(await fallbacks(fsId)).to.equal(0);
  });

  it('says how the resolver failed when it never answered a new tunnel by the connect timeout', async () => {
    const fsId = 'fs-0000d00a';
    await dns.stop();
    try {
      const port = await tunnelByName(fsId);
      expect((await exchange(port, 'SECRET')).received.toString()).to.equal('');
      const s = await status(fsId);
      expect(s.last_error?.code).to.equal('DNS_FAILED');
      expect(s.last_error?.message).to.equal(`DNS has not answered for ${nameOf(fsId)} after 3000 ms (the resolver failed with EAI_AGAIN; asked again every 1 s)`);
      expect(target!.handshakes).to.equal(0);
    } finally {
      await dns.start();
    }
  });

  it('fails with DNS_FAILED when DNS says the name has no address, and then falls back to no earlier answer', async () => {
    const fsId = 'fs-0000d005';
    const port = await tunnelByName(fsId);
    expect((await exchange(port, 'x')).received.toString()).to.equal('x' + ECHO_TRAILER);

    dns.names.delete(nameOf(fsId)); // the mount target was deleted: NXDOMAIN
    expect((await exchange(port, 'SECRET')).received.toString()).to.equal('');
    let s = await status(fsId);
    expect(s.last_error?.code).to.equal('DNS_FAILED');
    expect(s.last_error?.message).to.match(new RegExp(`^DNS has no address for ${escapeRegExp(nameOf(fsId))} \\(ENOTFOUND\\)`));
    expect(s.dns).to.equal(null);
    expect((await daemon.efsctl('status', fsId)).stdout).to.match(/^DNS answer: +none$/m);
    await waitFor('the answer gone from the record too', () => daemon.record(fsId).dns_answer === undefined || null);

    dns.mode = 'silent';
    expect((await exchange(port, 'SECRET')).received.toString()).to.equal('');
    s = await status(fsId);
    expect(s.last_error?.message).to.equal(`DNS has not answered for ${nameOf(fsId)} after 3000 ms`);
    expect(s.connections).to.deep.equal({ active: 0, ok: 1, failed: 2 });
    expect(await fallbacks(fsId)).to.equal(0);
    expect(target!.handshakes).to.equal(1);
  });

  it('fails a mount at its first attempt when DNS has no address for the name: MOUNT_FAILED says so, with the DNS hint', async () => {
    daemon.mount.behave('mount', { reach: true });
    try {
      // The stand-in talks to the tunnel port first, as mount.nfs4 does: through a name DNS knows, that works.
      const good = 'fs-0000d008';
      await tunnelByName(good);
      const dir = join(daemon.dir, 'mnt-good');
      mkdirSync(dir);
      expect((await daemon.efsctl('attach', good, dir, '-o', `region=${REGION}`)).code).to.equal(0);

      const unknown = 'fs-0000d007';
      const missing = join(daemon.dir, 'mnt-unknown');
      mkdirSync(missing);
      const r = await daemon.efsctl('attach', unknown, missing, '-o', `region=${REGION}`);
      expect(r.code).to.equal(1);
      // DNS's answer that the name has none is final: the mount is not tried again.
      expect(r.stderr).to.contain(`was stopped during attempt 1, and not tried again: the tunnel's connection to the mount target failed in a way no retry mends (DNS_FAILED): DNS has no address for ${nameOf(unknown)} (ENOTFOUND)`);
      expect(r.stderr).to.contain('[MOUNT_FAILED]').and.contain('Check the file system id and region, and that the file system has a mount target in this VPC (in the az= zone when one is given); if it has, check the resolver (`getent hosts NAME` shows what the daemon gets), or pass -o mounttargetip=ADDRESS.');
      expect(logLines('mount.failed', unknown)[0]).to.include('code=MOUNT_FAILED').and.include('DNS has no address');
    } finally {
      daemon.mount.behave('mount', {});
    }
  });

  it('efsctl doctor looks each tunnel\'s name up as the daemon does: the address DNS gives, or DNS_FAILED with DNS\'s answer that there is none', async () => {
    const known = 'fs-0000d0b1';
    const unknown = 'fs-0000d0b2';
    await tunnelByName(known);
    expect((await daemon.efsctl('add', unknown, '-o', `region=${REGION}`)).code).to.equal(0);
    const [cmd, args] = inOwnResolver(daemon.dir, DNS_HOST, [join(BIN, 'efsctl'), '--config', daemon.configFile, 'doctor', '--json']);
    const r = await run(cmd, args, { timeoutMs: 60_000 });
    const by = Object.fromEntries((JSON.parse(r.stdout) as DoctorReport).checks.map((c) => [c.name, c]));
    expect(by[`dns ${known}`]).to.deep.equal({ name: `dns ${known}`, status: 'ok', message: `${nameOf(known)} resolves to ${TARGET_HOST}`, fix: null });
    expect(by[`dns ${unknown}`]).to.deep.equal({
      name: `dns ${unknown}`, status: 'fail',
      message: `DNS has no address for ${nameOf(unknown)} (ENOTFOUND): no file system or mount target of that name is known to DNS`,
      fix: 'Check the file system id and region, and that the file system has a mount target in this VPC (in the az= zone when one is given); if it has, check the resolver (`getent hosts NAME` shows what the daemon gets), or pass -o mounttargetip=ADDRESS. [DNS_FAILED]',
    });
    expect(by[`reach ${known}`]).to.include({ status: 'ok' });
  });

  it('efsctl doctor warns, not fails, when DNS does not answer while the daemon still sends the tunnel\'s connections to DNS\'s last answer, names that address, and reaches it', async () => {
    const fsId = 'fs-0000d0b3';
    const port = await tunnelByName(fsId);
    expect((await exchange(port, 'x')).received.toString()).to.equal('x' + ECHO_TRAILER);
    const answeredAt = (await status(fsId)).dns?.answered_at;
    // Only this tunnel: doctor's look at each of the earlier tests' names would wait for the silent resolver too.
    for (const t of (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels) {
      if (t.fs_id !== fsId) expect((await daemon.efsctl('stop', t.fs_id, '--force')).code).to.equal(0);
    }
    dns.mode = 'silent';
    const askedBefore = dns.queries.length;
    const [cmd, args] = inOwnResolver(daemon.dir, DNS_HOST, [join(BIN, 'efsctl'), '--config', daemon.configFile, 'doctor', '--json']);
    const r = await run(cmd, args, { timeoutMs: 90_000 });
    const checks = (JSON.parse(r.stdout) as DoctorReport).checks;
    // Doctor asks the silent resolver for the tunnel's name alone: not for this host's own name, which reading the OS
    // through `hostname -f` did, freezing doctor before its first line for as long as the resolver took to give up.
    expect(new Set(dns.queries.slice(askedBefore).map((q) => q.name))).to.deep.equal(new Set([nameOf(fsId)]));
    expect(checks.find((c) => c.name === 'os')?.status).to.equal('ok');
    // The reach check goes where the tunnel's connections go, without asking the silent resolver again.
    expect(checks.find((c) => c.name === `reach ${fsId}`)).to.deep.equal({ name: `reach ${fsId}`, status: 'ok', message: `TCP ${TARGET_HOST}:2049 (DNS's last answer) answers`, fix: null });
    const check = checks.find((c) => c.name === `dns ${fsId}`);
    expect(check).to.deep.equal({
      name: `dns ${fsId}`, status: 'warn',
      message: `DNS gave no answer for ${nameOf(fsId)} within 3 s; efs-relayd sends ${fsId}'s connections to ${TARGET_HOST}, DNS's last answer (${answeredAt}), still verified against ${nameOf(fsId)}`,
      fix: 'Mounts go on meanwhile (the tunnel\'s record keeps that answer across a daemon restart), but a mount target that moves is not followed: fix the resolver. Check the file system id and region, and that the file system has a mount target in this VPC (in the az= zone when one is given); if it has, check the resolver (`getent hosts NAME` shows what the daemon gets), or pass -o mounttargetip=ADDRESS. [DNS_FAILED]',
    });
  });

  it('asks DNS once for the connections that wait on it together, not once per connection', async () => {
    const fsId = 'fs-0000d006';
    const port = await tunnelByName(fsId);
    expect((await exchange(port, 'x')).received.toString()).to.equal('x' + ECHO_TRAILER);
    dns.mode = 'silent';
    const before = dns.asked(nameOf(fsId));
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => exchange(port, `c${i}`)));
    expect(results.map((r) => r.received.toString())).to.deep.equal([1, 2, 3, 4, 5, 6].map((i) => `c${i}${ECHO_TRAILER}`));
    // One lookup is one A and one AAAA question.
    expect(dns.asked(nameOf(fsId)) - before).to.equal(2);
    expect(await fallbacks(fsId)).to.equal(6);
  });
});
