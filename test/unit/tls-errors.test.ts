import { expect } from 'chai';
import { classifySessionError, classifyUpstreamError, tlsErrorText } from '../../daemon/tls-policy.js';

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

  it('calls running out of file descriptors FD_LIMIT, not a refusal', () => {
    expect(classifyUpstreamError(tlsError('EMFILE', 'connect EMFILE 127.0.0.45:2049'))).to.equal('FD_LIMIT');
    expect(classifyUpstreamError(tlsError('ENFILE', 'connect ENFILE 127.0.0.45:2049'))).to.equal('FD_LIMIT');
  });

  it('calls any other OpenSSL failure a failed handshake rather than guessing', () => {
    expect(classifyUpstreamError(tlsError('ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', 'decryption failed or bad record mac'))).to.equal('TLS_HANDSHAKE_FAILED');
  });

  it('reads a handshake_failure alert after the handshake as the end of a renegotiation we refused, under both names', () => {
    expect(classifySessionError(tlsError('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'x'))).to.equal('TLS_RENEGOTIATION_REFUSED');
    expect(classifySessionError(tlsError('ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE', 'x'))).to.equal('TLS_RENEGOTIATION_REFUSED');
  });

  it('calls any other OpenSSL error of an established session a failed session, and a reset or close no failure at all', () => {
    expect(classifySessionError(tlsError('ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', 'x'))).to.equal('TLS_SESSION_FAILED');
    expect(classifySessionError(tlsError('ERR_SSL_CIPHER_OPERATION_FAILED', 'x'))).to.equal('TLS_SESSION_FAILED');
    for (const code of ['ECONNRESET', 'EPIPE', 'ERR_STREAM_DESTROYED']) expect(classifySessionError(tlsError(code, 'x')), code).to.equal(null);
  });

  it('shows OpenSSL\'s reason and alert number rather than its whole error line', () => {
    expect(tlsErrorText(new Error('803CED03B97F0000:error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 40\n')))
      .to.equal('sslv3 alert handshake failure (alert 40)');
    expect(tlsErrorText(new Error('80AC016F087F0000:error:1C800066:Provider routines:ossl_gcm_stream_update:cipher operation failed:../deps/openssl/openssl/providers/implementations/ciphers/ciphercommon_gcm.c:323:')))
      .to.equal('cipher operation failed');
    expect(tlsErrorText(new Error('certificate has expired'))).to.equal('certificate has expired');
  });

  it('leaves out the advice Node 24 adds to an unverified chain (run Node.js with --use-system-ca), which a daemon verifying against its own bundle cannot take', () => {
    expect(tlsErrorText(new Error('unable to verify the first certificate; if the root CA is installed locally, try running Node.js with --use-system-ca')))
      .to.equal('unable to verify the first certificate');
    expect(tlsErrorText(new Error('self-signed certificate; if the root CA is installed locally, try running Node.js with --use-system-ca'))).to.equal('self-signed certificate');
  });
});
