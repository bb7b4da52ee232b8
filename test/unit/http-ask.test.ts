// The daemon's own HTTPS requests (STS, the EFS API, credential endpoints) verify the server whatever the environment says.
import { expect } from 'chai';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { ask } from '../../daemon/http-ask.js';
import { tempDir } from '../helpers/daemon.js';
import { TestPki } from '../helpers/pki.js';

describe('the daemon\'s HTTPS requests', () => {
  let server: Server;
  let url = '';
  before(async () => {
    const pki = new TestPki(join(tempDir('http-ask'), 'pki'));
    const leaf = pki.leaf('localhost', pki.ca('nobody-trusts'));
    server = createServer({ key: leaf.key, cert: leaf.cert }, (_req, res) => res.end('{"Credentials":"secret"}'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://localhost:${(server.address() as { port: number }).port}/`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('refuses a server whose certificate no trusted CA signed, even with NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment', async () => {
    const before = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    try {
      const err = await ask(url, 'GET', {}, 5_000).then(() => null, (e: NodeJS.ErrnoException) => e);
      expect(err?.code, 'refused for its certificate').to.equal('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    } finally {
      if (before === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = before;
    }
  });
});
