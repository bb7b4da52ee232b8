// Shared test fixtures: one PKI per run (a trusted CA and the certificates
// the refused-server tests need), and the usual file system id and name.
import { join } from 'node:path';
import { tempDir } from './daemon.js';
import { TestPki, type Pem } from './pki.js';

export const FS_ID = 'fs-12345678';
export const REGION = 'us-east-1';
export const FS_NAME = `${FS_ID}.efs.${REGION}.amazonaws.com`;

export interface Certs {
  dir: string;
  ca: Pem;
  /** Valid, for FS_NAME, signed by ca. */
  good: Pem;
  goodRsa: Pem;
  otherCa: Pem;
  /** For FS_NAME, signed by otherCa. */
  untrusted: Pem;
  /** Signed by ca, for another file system. */
  otherFs: Pem;
  expired: Pem;
  selfSigned: Pem;
  /** For FS_NAME from an intermediate CA under ca; `cert` holds the leaf, then the intermediate, as a server sends them. */
  viaIntermediate: Pem;
  /** The same leaf alone: its issuer is nowhere in the trusted bundle. */
  intermediateMissing: Pem;
  /**
   * The leaf, its intermediate, and ca cross-signed by a root the bundle does not hold, as Amazon's mount targets
   * send Amazon Root CA 1 signed by Starfield Services G2 (aws/efs-utils#17): the chain ends at the trusted ca.
   */
  viaCrossSignedRoot: Pem;
}

let certs: Certs | null = null;
let pki: TestPki | null = null;
const byName = new Map<string, Pem>();

/** A valid certificate from the trusted test CA for any file system name. */
export function certFor(dnsName: string): Pem {
  const c = testCerts();
  let pem = byName.get(dnsName);
  if (!pem) {
    pem = pki!.leaf(dnsName, c.ca);
    byName.set(dnsName, pem);
  }
  return pem;
}

export function testCerts(): Certs {
  if (certs) return certs;
  const dir = tempDir('pki');
  pki = new TestPki(join(dir, 'pki'));
  const ca = pki.ca('trusted');
  const otherCa = pki.ca('other');
  const intermediate = pki.intermediate('m01', ca);
  const underIntermediate = pki.leaf(FS_NAME, intermediate);
  certs = {
    dir,
    ca,
    good: pki.leaf(FS_NAME, ca),
    goodRsa: pki.leaf(FS_NAME, ca, 'current', 'rsa'),
    otherCa,
    untrusted: pki.leaf(FS_NAME, otherCa),
    otherFs: pki.leaf(`fs-87654321.efs.${REGION}.amazonaws.com`, ca),
    expired: pki.leaf(FS_NAME, ca, 'expired'),
    selfSigned: pki.leaf(FS_NAME, null),
    viaIntermediate: { ...underIntermediate, cert: underIntermediate.cert + intermediate.cert },
    intermediateMissing: underIntermediate,
    viaCrossSignedRoot: { ...underIntermediate, cert: underIntermediate.cert + intermediate.cert + pki.crossSigned(ca, pki.ca('older-root')).cert },
  };
  return certs;
}

/**
 * Daemon config for tests: the test CA, a narrow port range of its own, and
 * no health probes unless a test asks (a probe is a TLS session the stand-in
 * servers would count).
 */
export function daemonConfig(first: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    port_range: { first, last: first + 49 },
    tls: { ca_file: testCerts().ca.certFile },
    relay: { connect_timeout: 5, close_timeout: 5 },
    health: { probe_interval: 0 },
    ...extra,
  };
}
