import { expect } from 'chai';
import { Relay, isLoopback } from '../../daemon/relay.js';
import { RelayError } from '../../daemon/errors.js';
import { policyContext } from '../../daemon/tls-policy.js';

describe('relay listener', () => {
  const spec = (listenHost: string) => ({
    fsId: 'fs-12345678', port: 0, listenHost, certName: 'fs-12345678.efs.us-east-1.amazonaws.com', address: '127.0.0.2',
    targetPort: 2049, secureContext: policyContext('', 'TLSv1.2'), held: null, maxVersion: 'TLSv1.2' as const, connectTimeoutMs: 1000, closeTimeoutMs: 1000,
  });

  it('refuses to listen on a non-loopback address, because it carries plaintext NFS', async () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.2']) {
      const err = await new Relay(spec(host)).listen().then(() => null, (e: unknown) => e);
      expect(err, host).to.be.instanceOf(RelayError);
      expect((err as RelayError).code).to.equal('LISTEN_NOT_LOOPBACK');
    }
  });

  it('listens on any 127.x.y.z address and ::1', async () => {
    expect(['127.0.0.1', '127.1.2.3', '::1'].every(isLoopback)).to.equal(true);
    const r = new Relay(spec('127.0.0.1'));
    await r.listen();
    expect(r.listening).to.equal(true);
    await r.close();
    expect(r.listening).to.equal(false);
  });
});
