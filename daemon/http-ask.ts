// One HTTP request of the daemon's own, to AWS endpoints and OCSP responders:
// instance metadata (instance-region.ts), the ECS agent and STS
// (aws-credentials.ts), OCSP (ocsp.ts). Never a kept-alive socket, a limit on
// the whole request, and a bounded body.
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface Answer {
  status: number;
  /** The body as UTF-8 text. */
  body: string;
  /** The body as it came (an OCSP answer is DER). */
  bytes: Buffer;
}

/** At most this much of a body is kept: a credentials answer with its session token, or an OCSP answer with its signer's certificate, is a few KiB. */
const BODY_LIMIT = 16_384;

/**
 * One HTTP (or HTTPS, verified against Node's CAs) request, its status and (the first 16 KiB of) its body; rejects
 * when there is no answer within timeoutMs. `payload` is sent as the request's body (an OCSP request).
 */
export function ask(url: string, method: 'GET' | 'PUT' | 'POST', headers: Record<string, string>, timeoutMs: number, payload?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // agent: false, so that no kept-alive socket outlives the request (the daemon asks rarely).
    // rejectUnauthorized said, not left to the default, which NODE_TLS_REJECT_UNAUTHORIZED=0 would turn off.
    const req = (url.startsWith('https:') ? httpsRequest : request)(url, { method, headers, agent: false, rejectUnauthorized: true }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        if (size >= BODY_LIMIT) return;
        chunks.push(d);
        size += d.length;
      });
      res.on('end', () => {
        clearTimeout(timer);
        const bytes = Buffer.concat(chunks).subarray(0, BODY_LIMIT);
        resolve({ status: res.statusCode ?? 0, body: bytes.toString('utf8'), bytes });
      });
      res.on('error', reject);
    });
    // The whole request, not only an idle socket, so that a trickling answer cannot hold start-up or a connection.
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(payload);
  });
}
