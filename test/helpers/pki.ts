// Certificates made at test time with the openssl CLI: a CA, and leaves
// signed by it (valid, expired, for another name), or self-signed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Pem {
  key: string;
  cert: string;
  certFile: string;
  keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export class TestPki {
  private seq = 0;
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private load(base: string): Pem {
    const certFile = join(this.dir, `${base}.crt`);
    const keyFile = join(this.dir, `${base}.key`);
    return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile };
  }

  /** A self-signed CA certificate (P-256). */
  ca(name: string): Pem {
    const base = `ca-${name}`;
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${base}.key`], this.dir);
    openssl(
      ['req', '-x509', '-new', '-key', `${base}.key`, '-sha256', '-days', '30', '-subj', `/CN=efs-relay test CA ${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', `${base}.crt`],
      this.dir,
    );
    return this.load(base);
  }

  /** An intermediate CA certificate (P-256) signed by `parent`, as Amazon's mount target certificates come from one. */
  intermediate(name: string, parent: Pem): Pem {
    const base = `ica-${name}`;
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${base}.key`], this.dir);
    openssl(['req', '-new', '-key', `${base}.key`, '-subj', `/CN=efs-relay test intermediate CA ${name}`, '-out', `${base}.csr`], this.dir);
    writeFileSync(join(this.dir, `${base}.ext`), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
    openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', parent.certFile, '-CAkey', parent.keyFile, '-CAcreateserial',
      '-days', '30', '-sha256', '-extfile', `${base}.ext`, '-out', `${base}.crt`], this.dir);
    return this.load(base);
  }

  /**
   * `root`'s subject and key, signed by `by`: a cross-signed root, as Amazon Root CA 1 is also issued by Starfield
   * Services Root Certificate Authority - G2 for old clients that only trust that one.
   */
  crossSigned(root: Pem, by: Pem): Pem {
    const base = `cross-${++this.seq}`;
    const subject = execFileSync('openssl', ['x509', '-in', root.certFile, '-noout', '-subject', '-nameopt', 'compat'], { encoding: 'utf8' })
      .trim().replace(/^subject=/, '');
    openssl(['req', '-new', '-key', root.keyFile, '-subj', subject, '-out', `${base}.csr`], this.dir);
    writeFileSync(join(this.dir, `${base}.ext`), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
    openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', by.certFile, '-CAkey', by.keyFile, '-CAcreateserial',
      '-days', '30', '-sha256', '-extfile', `${base}.ext`, '-out', `${base}.crt`], this.dir);
    return { cert: readFileSync(join(this.dir, `${base}.crt`), 'utf8'), key: root.key, certFile: join(this.dir, `${base}.crt`), keyFile: root.keyFile };
  }

  /**
   * A server certificate for `dnsName`, signed by `ca` (or self-signed when
   * ca is null). `validity` picks the dates: now (default) or long expired.
   */
  leaf(dnsName: string, ca: Pem | null, validity: 'current' | 'expired' = 'current', keyType: 'ec' | 'rsa' = 'ec'): Pem {
    const base = `leaf-${++this.seq}`;
    if (keyType === 'ec') openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${base}.key`], this.dir);
    else openssl(['genrsa', '-out', `${base}.key`, '2048'], this.dir);
    const ext = `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${dnsName}\n`;
    writeFileSync(join(this.dir, `${base}.ext`), ext);
    if (ca === null) {
      openssl(['req', '-x509', '-new', '-key', `${base}.key`, '-sha256', '-days', '30', '-subj', `/CN=${dnsName}`,
        '-addext', `subjectAltName=DNS:${dnsName}`, '-out', `${base}.crt`], this.dir);
      return this.load(base);
    }
    openssl(['req', '-new', '-key', `${base}.key`, '-subj', `/CN=${dnsName}`, '-out', `${base}.csr`], this.dir);
    if (validity === 'current') {
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial',
        '-days', '30', '-sha256', '-extfile', `${base}.ext`, '-out', `${base}.crt`], this.dir);
      return this.load(base);
    }
    // openssl x509 cannot back-date; `openssl ca` can, with a throwaway database.
    const db = join(this.dir, `${base}-db`);
    mkdirSync(db, { recursive: true });
    writeFileSync(join(db, 'index.txt'), '');
    writeFileSync(join(db, 'serial'), '1000\n');
    const conf = [
      '[ca]', 'default_ca = test', '[test]', `dir = ${db}`, 'database = $dir/index.txt', 'serial = $dir/serial',
      'new_certs_dir = $dir', 'default_md = sha256', 'policy = any', 'unique_subject = no', 'copy_extensions = none',
      '[any]', 'commonName = supplied', '[ext]', ...ext.trim().split('\n'),
    ].join('\n');
    writeFileSync(join(db, 'ca.conf'), conf + '\n');
    openssl(['ca', '-batch', '-config', join(db, 'ca.conf'), '-cert', ca.certFile, '-keyfile', ca.keyFile,
      '-startdate', '20200101000000Z', '-enddate', '20210101000000Z', '-extensions', 'ext',
      '-in', `${base}.csr`, '-out', `${base}.crt`, '-notext'], this.dir);
    return this.load(base);
  }
}

/**
 * The extensions of a PEM certificate as openssl reads them: OID → the hex dump of its value (the DER inside the
 * extension's OCTET STRING), from `openssl asn1parse`.
 */
export function certificateExtensions(pem: string): Record<string, string> {
  const asn1 = execFileSync('openssl', ['asn1parse'], { input: pem, encoding: 'utf8' });
  const out: Record<string, string> = {};
  const lines = asn1.split('\n');
  lines.forEach((line, i) => {
    const oid = /OBJECT\s+:(\d+(?:\.\d+)+)\s*$/.exec(line)?.[1];
    const hex = /OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]+)/.exec(lines[i + 1] ?? '')?.[1];
    if (oid && hex) out[oid] = hex;
  });
  return out;
}

/** A UTF8String's DER, in hex as certificateExtensions gives it (a short string). */
export function utf8StringHex(s: string): string {
  return `0C${Buffer.byteLength(s).toString(16).padStart(2, '0')}${Buffer.from(s).toString('hex')}`.toUpperCase();
}

/** The items of a DER value (hex) as `openssl asn1parse` reads them: each one's type, and a primitive one's value. */
export function asn1Items(hex: string): Array<{ type: string; value: string }> {
  const out = execFileSync('openssl', ['asn1parse', '-inform', 'DER'], { input: Buffer.from(hex, 'hex'), encoding: 'utf8' });
  return out.trim().split('\n').map((line) => {
    // "    0:d=0  hl=4 l=1102 cons: SEQUENCE" / "   19:d=1  hl=2 l=  64 prim: OCTET STRING      :6aa6…"
    const m = /(?:cons|prim):\s+(.+?)\s*(?::(.*))?$/.exec(line);
    return { type: m?.[1] ?? line, value: m?.[2] ?? '' };
  });
}
