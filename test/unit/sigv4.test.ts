// efs-utils' own test vectors (test_create_self_signed_cert.py): the mount
// target checks the signature against exactly these forms.
import { expect } from 'chai';
import { canonicalRequest, signature, stringToSign, type ConnectRequest } from '../../daemon/sigv4.js';

const FIXED = new Date(Date.UTC(2000, 0, 1, 12, 0, 0));
const request: ConnectRequest = {
  publicKeyHash: 'fake_public_key_hash', accessKeyId: 'FAKE_AWS_ACCESS_KEY_ID', sessionToken: null, region: 'us-east-1', fsId: 'fs-deadbeef', date: FIXED,
};

describe('the SigV4 signature of an IAM mount\'s Connect request', () => {
  it('writes the canonical request as efs-utils does, without a session token', () => {
    expect(canonicalRequest(request)).to.equal(
      'GET\n/\nAction=Connect&PublicKeyHash=fake_public_key_hash&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential='
      + 'FAKE_AWS_ACCESS_KEY_ID%2F20000101%2Fus-east-1%2Felasticfilesystem%2Faws4_request&X-Amz-Date=20000101T120000Z&'
      + 'X-Amz-Expires=86400&X-Amz-SignedHeaders=host\nhost:fs-deadbeef\nhost\n'
      + 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('puts the session token in the query, sorted before X-Amz-SignedHeaders', () => {
    expect(canonicalRequest({ ...request, sessionToken: 'FAKE_SESSION_TOKEN' })).to.equal(
      'GET\n/\nAction=Connect&PublicKeyHash=fake_public_key_hash&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential='
      + 'FAKE_AWS_ACCESS_KEY_ID%2F20000101%2Fus-east-1%2Felasticfilesystem%2Faws4_request&X-Amz-Date=20000101T120000Z&'
      + 'X-Amz-Expires=86400&X-Amz-Security-Token=FAKE_SESSION_TOKEN&X-Amz-SignedHeaders=host\nhost:fs-deadbeef\nhost'
      + '\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('escapes a real session token\'s +, / and = as Python\'s quote_plus does', () => {
    expect(canonicalRequest({ ...request, sessionToken: 'IQoJb3Jp+Z2lu/X2Vj=' })).to.contain('&X-Amz-Security-Token=IQoJb3Jp%2BZ2lu%2FX2Vj%3D&');
  });

  it('writes the string to sign with the elasticfilesystem credential scope', () => {
    expect(stringToSign('canonical_request', FIXED, 'us-east-1')).to.equal(
      'AWS4-HMAC-SHA256\n20000101T120000Z\n20000101/us-east-1/elasticfilesystem/aws4_request\n'
      + '572b1e335109068b81e4def81524c5fe5d0e385143b5656cbf2f7c88e5c1a51e');
  });

  it('signs with the key derived from the secret, the day, the region and the service', () => {
    expect(signature('string_to_sign', FIXED, 'FAKE_AWS_SECRET_ACCESS_KEY', 'us-east-1')).to.equal('6aa643803d4a1b07c5ac87bff96347ef28dab1cb5a5c5d63969c90ca11454c4a');
  });
});
