// `make demo`: the daemon relaying real NFS traffic to a local EFS stand-in.
// nfs-ganesha plays the file system, a TLS server on 127.0.0.2:2049 with a
// certificate from a CA made just now plays the mount target, and libnfs'
// nfs-cp / nfs-cat play the NFS client. Everything is torn down at the end.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, removeTempDirs, tempDir, waitFor } from './helpers/daemon.js';
import { FS_ID, FS_NAME, daemonConfig, testCerts } from './helpers/fixtures.js';
import { MountTargetStandIn } from './helpers/mount-target.js';
import { Ganesha, nfsCatSha256, nfsCp, nfsUnavailable, sha256File } from './helpers/nfs.js';
import type { AddResult, TunnelView } from '../daemon/tunnels.js';

const step = (n: number, text: string): void => {
  process.stdout.write(`\n[${n}/7] ${text}\n`);
};
const show = (cmd: string, out: string): void => {
  process.stdout.write(`$ ${cmd}\n${out.trimEnd()}\n`);
};

const why = nfsUnavailable();
if (why) {
  process.stderr.write(`make demo: cannot run: ${why}\n`);
  process.exit(1);
}

const started = Date.now();
let ganesha: Ganesha | null = null;
let target: MountTargetStandIn | null = null;
let daemon: Daemon | null = null;
const work = tempDir('demo');
let failed = false;
try {
  step(1, `Making a test CA and a certificate for ${FS_NAME} (openssl)`);
  const certs = testCerts();
  process.stdout.write(`CA: ${certs.ca.certFile}\n`);

  step(2, 'Starting nfs-ganesha (the file system) on 127.0.0.1:12049');
  ganesha = await Ganesha.get();
  process.stdout.write(`export: ${ganesha.exportPath}\n`);

  step(3, 'Starting the mount-target stand-in: TLS on 127.0.0.2:2049 in front of ganesha');
  target = await new MountTargetStandIn({
    host: '127.0.0.2', port: 2049, cert: certs.good, backend: { host: '127.0.0.1', port: ganesha.nfsPort },
  }).start();

  step(4, 'Starting efs-relayd');
  daemon = await new Daemon(daemonConfig(20049, { health: { probe_interval: 5 } })).start();
  process.stdout.write(`config: ${daemon.configFile}\n`);

  step(5, 'Asking the daemon for a tunnel');
  const add = await daemon.efsctl('add', FS_ID, '-o', 'mounttargetip=127.0.0.2,region=us-east-1');
  show(`efsctl add ${FS_ID} -o mounttargetip=127.0.0.2,region=us-east-1`, add.stdout + add.stderr);
  if (add.code !== 0) throw new Error('efsctl add failed');
  const { tunnel } = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.2,region=us-east-1');

  step(6, `Copying 16 MiB through the tunnel (127.0.0.1:${tunnel.port}) and reading it back`);
  const src = join(work, 'demo.bin');
  writeFileSync(src, randomBytes(16 << 20));
  const sum = await sha256File(src);
  const writeUrl = ganesha.v3Url('demo.bin', tunnel.port);
  await nfsCp(src, writeUrl);
  show(`nfs-cp demo.bin '${writeUrl}'`, 'copied 16777216 bytes (NFSv3 write)');
  const readUrl = ganesha.v4Url('demo.bin', tunnel.port);
  const back = await nfsCatSha256(readUrl);
  show(`nfs-cat '${readUrl}' | sha256sum`, `${back.sha256}  (NFSv4 read, ${back.bytes} bytes)`);
  process.stdout.write(`original:  ${sum}\n`);
  if (back.sha256 !== sum) throw new Error('checksums differ');
  process.stdout.write('checksums match: the data went through verified TLS 1.2 with AES-256-GCM\n');

  step(7, 'The tunnel as efsctl sees it');
  await waitFor('the first health probe', async () => (await daemon!.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels[0]?.health.probe !== null, 5_000);
  const list = await daemon.efsctl('list');
  show('efsctl list', list.stdout);
} catch (err) {
  failed = true;
  process.stderr.write(`\nmake demo failed: ${(err as Error).message}\n`);
  if (daemon) process.stderr.write(`daemon log:\n${daemon.logs}\n`);
} finally {
  process.stdout.write('\nTearing down...\n');
  await daemon?.stop();
  await target?.stop();
  await Ganesha.stopShared();
  removeTempDirs();
}
process.stdout.write(failed ? 'Demo FAILED.\n' : `Demo done in ${((Date.now() - started) / 1000).toFixed(1)} s.\n`);
process.exit(failed ? 1 : 0);
