// A CA hierarchy with OCSP, as Amazon's is: a root, an intermediate CA that
// issues the mount targets' certificates, both keeping an `openssl ca`
// database, and an HTTP server on loopback that answers OCSP requests with
// `openssl ocsp` (a real responder, run per request so that it reads the
// database as it is then). Each certificate names its issuer's responder in
// its Authority Information Access. The intermediate's answers are signed by
// a responder certificate it delegated (EKU OCSPSigning), the root's by the
// root itself.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { Pem } from './pki.js';

type Issuer = 'root' | 'intermediate';

/** How the responder behaves: answers as it should, HTTP 503, answers signed by a key nobody authorized, or signed with SHA-1. */
export type ResponderMode = 'answer' | 'unavailable' | 'forged' | 'sha1';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export class OcspAuthority {
  readonly root: Pem;
  readonly intermediate: Pem;
  /** What the responder is asked, by issuer. */
  readonly asked: Record<Issuer, number> = { root: 0, intermediate: 0 };
  mode: ResponderMode = 'answer';
  private server: Server | null = null;
  private seq = 0;

  /** `url`: where the responder listens, e.g. http://127.0.0.76:18080 (certificates name it at once). */
  constructor(readonly dir: string, readonly url: string) {
    mkdirSync(dir, { recursive: true });
    this.root = this.selfSigned('root', 'efs-relay test OCSP root CA');
    this.intermediate = this.issue('root', 'intermediate', '/CN=efs-relay test OCSP intermediate CA',
      `basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nauthorityInfoAccess=OCSP;URI:${url}/root\n`);
    this.issue('intermediate', 'responder', '/CN=efs-relay test OCSP responder',
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=OCSPSigning\n');
    // Signs "forged" answers: a key and certificate of its own, issued by nobody the daemon trusts.
    openssl(['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'forger.key',
      '-subj', '/CN=efs-relay test OCSP forger', '-days', '30', '-addext', 'extendedKeyUsage=OCSPSigning', '-out', 'forger.crt'], dir);
  }

  /** A mount target's certificate for `dnsName`, issued by the intermediate; its PEM carries the intermediate too. */
  leaf(dnsName: string): Pem {
    const base = `leaf-${++this.seq}`;
    const pem = this.issue('intermediate', base, `/CN=${dnsName}`,
      `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${dnsName}\nauthorityInfoAccess=OCSP;URI:${this.url}/intermediate\n`);
    return { ...pem, cert: pem.cert + this.intermediate.cert };
  }

  /** A certificate for `dnsName` that the intermediate's key signed outside its database: the responder does not know it. */
  unrecorded(dnsName: string): Pem {
    const base = `unrecorded-${++this.seq}`;
    const ica = join(this.dir, 'intermediate');
    writeFileSync(join(this.dir, `${base}.ext`), `subjectAltName=DNS:${dnsName}\nauthorityInfoAccess=OCSP;URI:${this.url}/intermediate\n`);
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${base}.key`,
      '-subj', `/CN=${dnsName}`, '-out', `${base}.csr`], this.dir);
    openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', join(ica, 'ca.crt'), '-CAkey', join(ica, 'ca.key'), '-set_serial', '999999',
      '-days', '30', '-sha256', '-extfile', `${base}.ext`, '-out', `${base}.crt`], this.dir);
    return this.load(this.dir, base);
  }

  /** Revoke a certificate in its issuer's database (keyCompromise): the responder says so from the next request. */
  revoke(issuer: Issuer, pem: Pem): void {
    openssl(['ca', '-config', join(this.dir, issuer, 'ca.conf'), '-revoke', pem.certFile, '-crl_reason', 'keyCompromise'], this.dir);
  }

  async start(host: string, port: number): Promise<this> {
    this.server = createServer((req, res) => {
      const issuer = req.url === '/root' ? 'root' : req.url === '/intermediate' ? 'intermediate' : null;
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        if (issuer === null || req.method !== 'POST') return void res.writeHead(404).end();
        this.asked[issuer]++;
        if (this.mode === 'unavailable') return void res.writeHead(503).end();
        this.answer(issuer, Buffer.concat(chunks)).then(
          (der) => res.writeHead(200, { 'Content-Type': 'application/ocsp-response' }).end(der),
          () => res.writeHead(500).end(),
        );
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, host, resolve));
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** `openssl ocsp` as the responder of `issuer`'s database, for one request. */
  private answer(issuer: Issuer, request: Buffer): Promise<Buffer> {
    const ca = join(this.dir, issuer);
    const signer = this.mode === 'forged' ? ['-rsigner', 'forger.crt', '-rkey', 'forger.key']
      : issuer === 'root' ? ['-rsigner', this.root.certFile, '-rkey', this.root.keyFile]
        : ['-rsigner', join(this.dir, 'intermediate', 'responder.crt'), '-rkey', join(this.dir, 'intermediate', 'responder.key')];
    const args = ['ocsp', '-index', join(ca, 'index.txt'), '-CA', join(ca, 'ca.crt'), ...signer, ...(this.mode === 'sha1' ? ['-rmd', 'sha1'] : []), '-nmin', '60', '-reqin', '-', '-respout', '-'];
    return new Promise((resolve, reject) => {
      const p = execFile('openssl', args, { cwd: this.dir, encoding: 'buffer' }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
      p.stdin?.end(request);
    });
  }

  /** A self-signed CA with its own database, in dir/NAME. */
  private selfSigned(name: Issuer, cn: string): Pem {
    const ca = this.database(name);
    openssl(['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key',
      '-sha256', '-days', '30', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', 'ca.crt'], ca);
    return this.load(ca, 'ca');
  }

  /** A certificate issued by `by` with `openssl ca` (so that its database, and the responder, know it); a CA gets a database of its own. */
  private issue(by: Issuer, name: string, subject: string, ext: string): Pem {
    const ca = join(this.dir, by);
    const out = name === 'intermediate' ? this.database('intermediate') : ca;
    const base = name === 'intermediate' ? 'ca' : name;
    writeFileSync(join(ca, `${name}.ext`), ext);
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(out, `${base}.key`),
      '-subj', subject, '-out', join(ca, `${name}.csr`)], ca);
    openssl(['ca', '-batch', '-config', join(ca, 'ca.conf'), '-days', '30', '-extfile', join(ca, `${name}.ext`),
      '-in', join(ca, `${name}.csr`), '-out', join(out, `${base}.crt`), '-notext'], ca);
    return this.load(out, base);
  }

  private database(name: Issuer): string {
    const ca = join(this.dir, name);
    mkdirSync(ca, { recursive: true });
    writeFileSync(join(ca, 'index.txt'), '');
    writeFileSync(join(ca, 'serial'), `${name === 'root' ? '10' : '20'}00\n`);
    writeFileSync(join(ca, 'ca.conf'), [
      '[ca]', 'default_ca = test', '[test]', `dir = ${ca}`, 'database = $dir/index.txt', 'serial = $dir/serial',
      'new_certs_dir = $dir', 'certificate = $dir/ca.crt', 'private_key = $dir/ca.key', 'default_md = sha256',
      'policy = any', 'unique_subject = no', 'copy_extensions = none', 'default_crl_days = 30', '[any]', 'commonName = supplied', '',
    ].join('\n'));
    return ca;
  }

  private load(dir: string, base: string): Pem {
    const certFile = join(dir, `${base}.crt`);
    const keyFile = join(dir, `${base}.key`);
    return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile };
  }
}
