import { expect } from 'chai';
import { classifyUpstreamError } from '../../daemon/tls-policy.js';

/** An error as Node's TLS socket emits it: OpenSSL's reason as ERR_SSL_<REASON>. */
function tlsError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('TLS error codes', () => {
  it('reads a handshake_failure alert as a cipher refusal under both of OpenSSL\'s names for it (3.0 in Node 20, 3.2+ in Node 24)', () => {
    // The refusal is then diagnosed further (TLS_CIPHER_REFUSED is ambiguous): see the TLS policy tests.
    expect(classifyUpstreamError(tlsError('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'sslv3 alert handshake failure:SSL alert number 40'))).to.equal('TLS_CIPHER_REFUSED');
    expect(classifyUpstreamError(tlsError('ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE', 'ssl/tls alert handshake failure:SSL alert number 40'))).to.equal('TLS_CIPHER_REFUSED');
  });

  it('calls any other OpenSSL failure a failed handshake rather than guessing', () => {
    expect(classifyUpstreamError(tlsError('ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', 'decryption failed or bad record mac'))).to.equal('TLS_HANDSHAKE_FAILED');
  });
});
