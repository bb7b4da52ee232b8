// Real NFS through the relay: ganesha behind a TLS mount-target stand-in on
// 127.0.0.2:2049, the daemon in between, and the libnfs userspace client.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/daemon.js';
import { FS_ID, FS_NAME } from './helpers/fixtures.js';
import { nfsCatSha256, nfsCp, requireNfs, sha256File } from './helpers/nfs.js';
import { startNfsStack, type NfsStack } from './helpers/stack.js';
import type { AddResult } from '../daemon/tunnels.js';

async function randomFile(path: string, bytes: number): Promise<string> {
  const out = createWriteStream(path);
  for (let left = bytes; left > 0; left -= 1 << 20) {
    if (!out.write(randomBytes(Math.min(left, 1 << 20)))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r, j) => out.end((err?: Error | null) => (err ? j(err) : r())));
  return sha256File(path);
}

describe('real NFS through the relay', function () {
  let stack: NfsStack;
  before(async function () {
    requireNfs(this);
    stack = await startNfsStack('127.0.0.2', 20100, true);
  });
  after(async () => {
    await stack?.stop();
  });

  it('writes a 64 MiB file over NFSv3 and reads it back over NFSv4 through the tunnel, checksums equal', async () => {
    const { daemon, ganesha, target } = stack;
    const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.2,region=us-east-1');
    expect(add.created).to.equal(true);
    expect(add.tunnel.target).to.deep.equal({ dns_name: FS_NAME, cert_name: FS_NAME, address: '127.0.0.2', port: 2049, region: 'us-east-1' });
    const port = add.tunnel.port;

    const src = join(tempDir('nfs'), 'random-64M.bin');
    const sum = await randomFile(src, 64 << 20);
    await nfsCp(src, ganesha.v3Url('through-relay.bin', port));
    const back = await nfsCatSha256(ganesha.v4Url('through-relay.bin', port));
    expect(back.bytes).to.equal(64 << 20);
    expect(back.sha256).to.equal(sum);
    expect(await sha256File(join(ganesha.exportPath, 'through-relay.bin'))).to.equal(sum);

    // The traffic really went through the tunnel, encrypted.
    const list = await daemon.efsctlJson<{ tunnels: AddResult['tunnel'][] }>('list');
    const t = list.tunnels[0]!;
    expect(t.bytes.upstream).to.be.greaterThan(64 << 20);
    expect(t.bytes.downstream).to.be.greaterThan(64 << 20);
    expect(t.connections.failed).to.equal(0);
    const head = (await readHead(src, 4096));
    expect(target.wireBytes().includes(head), 'file content seen in plaintext on the wire').to.equal(false);
  });
});

async function readHead(path: string, n: number): Promise<Buffer> {
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'r');
  const buf = Buffer.alloc(n);
  await fh.read(buf, 0, n, 1 << 20);
  await fh.close();
  return buf;
}
