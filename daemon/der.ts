// The few DER (ASN.1) structures the daemon writes and reads itself, since
// Node can sign and verify but neither write a certificate nor speak OCSP:
// client certificates (client-cert.ts) and OCSP requests and responses
// (ocsp.ts). Reading checks every length against its container, because an
// OCSP answer arrives over plain HTTP and is parsed before its signature is
// known to be good.
import { createHash } from 'node:crypto';

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export const tlv = (tag: number, content: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), length(content.length), content]);
export const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
export const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
export const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const octets = (b: Buffer): Buffer => tlv(0x04, b);
export const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));
export const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 + n, content);
export const NULL = Buffer.from([0x05, 0x00]);

export function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const out = [40 * a + b];
  for (const n of rest) {
    const base128: number[] = [n % 128];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) base128.unshift(0x80 | (v % 128));
    out.push(...base128);
  }
  return tlv(0x06, Buffer.from(out));
}

/** A positive INTEGER from unsigned big-endian bytes. */
export function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, (v[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

/** UTCTime, YYMMDDHHMMSSZ: RFC 5280's form for dates before 2050. */
export function utcTime(d: Date): Buffer {
  const two = (n: number): string => String(n).padStart(2, '0');
  return tlv(0x17, Buffer.from(`${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`, 'ascii'));
}

/** One DER element of a buffer: its tag, and where its content starts and ends. */
export interface Element {
  tag: number;
  /** Where its tag is. */
  at: number;
  start: number;
  end: number;
}

/** The DER element at `at`, which must end by `limit` (default: the buffer's end). Throws on a malformed or runaway one. */
export function element(der: Buffer, at: number, limit = der.length): Element {
  if (at + 2 > limit) throw new Error('DER: an element runs past its container');
  const tag = der[at] as number;
  if ((tag & 0x1f) === 0x1f) throw new Error('DER: multi-byte tags are not used here');
  let len = der[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new Error('DER: a malformed length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[start + i] as number);
    start += n;
  }
  if (start + len > limit) throw new Error('DER: an element runs past its container');
  return { tag, at, start, end: start + len };
}

/** The elements inside a constructed element, in order. */
export function children(der: Buffer, parent: Pick<Element, 'start' | 'end'>): Element[] {
  const out: Element[] = [];
  for (let at = parent.start; at < parent.end;) {
    const e = element(der, at, parent.end);
    out.push(e);
    at = e.end;
  }
  return out;
}

/** The element's whole encoding, tag and length included. */
export const encoding = (der: Buffer, e: Element): Buffer => der.subarray(e.at, e.end);
/** The element's content. */
export const content = (der: Buffer, e: Element): Buffer => der.subarray(e.start, e.end);

/** An OBJECT IDENTIFIER's content as dotted decimal. */
export function dotted(bytes: Buffer): string {
  const first = bytes[0] ?? 0;
  const parts = [Math.min(2, Math.floor(first / 40)), first - 40 * Math.min(2, Math.floor(first / 40))];
  let v = 0;
  for (const byte of bytes.subarray(1)) {
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** A GeneralizedTime's content (YYYYMMDDHHMMSS[.fff]Z, as RFC 5280 and RFC 6960 write it) as a Date. */
export function generalizedTime(bytes: Buffer): Date {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\.\d+)?Z$/.exec(bytes.toString('ascii'));
  if (!m) throw new Error(`DER: "${bytes.toString('ascii')}" is not a GeneralizedTime in UTC`);
  const [, y, mo, d, h, mi, s, frac] = m as unknown as [string, string, string, string, string, string, string, string | undefined];
  return new Date(Date.UTC(+y, +mo - 1, +d, +h, +mi, +s, frac ? Math.floor(Number(frac) * 1000) : 0));
}

/** The top-level fields of a DER certificate's tbsCertificate, by name. */
export interface CertificateFields {
  tbs: Element;
  serial: Element;
  issuer: Element;
  subject: Element;
  spki: Element;
  /** [3] extensions, if any. */
  extensions: Element | null;
}

/** Certificate → tbsCertificate → its fields (RFC 5280 4.1). Throws on malformed DER. */
export function certificateFields(der: Buffer): CertificateFields {
  const cert = element(der, 0);
  const tbs = element(der, cert.start, cert.end);
  const items = children(der, tbs);
  const fields = items[0]?.tag === 0xa0 ? items.slice(1) : items; // [0] version is optional (v1)
  const [serial, , issuer, , subject, spki] = fields;
  if (!serial || !issuer || !subject || !spki) throw new Error('DER: a certificate lacks a field');
  return { tbs, serial, issuer, subject, spki, extensions: fields.find((e) => e.tag === 0xa3) ?? null };
}

/**
 * SHA-1 of a SubjectPublicKeyInfo's key bits: the key identifier (RFC 5280, method 1), the PublicKeyHash that an
 * IAM signature names (efs-utils' get_public_key_sha1), and an OCSP CertID's issuerKeyHash.
 */
export function publicKeyHash(spki: Buffer, hash = 'sha1'): Buffer {
  const outer = element(spki, 0);
  const algorithm = element(spki, outer.start, outer.end);
  const key = element(spki, algorithm.end, outer.end);
  return createHash(hash).update(spki.subarray(key.start + 1, key.end)).digest(); // past the count of unused bits
}
