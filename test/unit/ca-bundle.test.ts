import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// Published by Amazon Trust Services (https://www.amazontrust.com/repository/).
const EXPECTED: Array<[string, string]> = [
  ['CN=Amazon Root CA 1', '8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E'],
  ['CN=Amazon Root CA 2', '1B:A5:B2:AA:8C:65:40:1A:82:96:01:18:F8:0B:EC:4F:62:30:4D:83:CE:C4:71:3A:19:C3:9C:01:1E:A4:6D:B4'],
  ['CN=Amazon Root CA 3', '18:CE:6C:FE:7B:F1:4E:60:B2:E3:47:B8:DF:E8:68:CB:31:D0:2E:BB:3A:DA:27:15:69:F5:03:43:B4:6D:B3:A4'],
  ['CN=Amazon Root CA 4', 'E3:5D:28:41:9E:D0:20:25:CF:A6:90:38:CD:62:39:62:45:8D:A5:C6:95:FB:DE:A3:C2:2B:0B:FB:25:89:70:92'],
];

describe('CA bundle', () => {
  it('holds exactly Amazon Root CA 1-4, with their published SHA-256 fingerprints', () => {
    const pem = readFileSync(join(import.meta.dirname, '../../../../etc/amazon-root-cas.pem'), 'utf8');
    const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const found = certs.map((c) => {
      const x = new X509Certificate(c);
      return [x.subject.split('\n').find((l) => l.startsWith('CN=')), x.fingerprint256];
    });
    expect(found).to.deep.equal(EXPECTED);
  });
});
