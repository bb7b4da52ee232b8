// efs-utils' own test vectors (test_create_self_signed_cert.py): the mount
// target checks the signature against exactly these forms.
import { expect } from 'chai';
import { canonicalRequest, signApiRequest, signature, stringToSign, type ConnectRequest } from '../../daemon/sigv4.js';

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

// AWS's own SigV4 test suite (get-vanilla, post-x-www-form-urlencoded, a query, a path): the header form that STS and EFS's API check.
describe('the SigV4 signature of an AWS API request (STS AssumeRole)', () => {
  const SUITE = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: null };
  const at = { region: 'us-east-1', service: 'service', date: new Date(Date.UTC(2015, 7, 30, 12, 36, 0)) };

  it('signs get-vanilla as AWS\'s test suite does', () => {
    const h = signApiRequest({ method: 'GET', url: new URL('https://example.amazonaws.com/'), body: '', ...at }, SUITE);
    expect(h).to.deep.equal({
      host: 'example.amazonaws.com', 'x-amz-date': '20150830T123600Z',
      authorization: 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
    });
  });

  it('signs post-x-www-form-urlencoded, its content type and body, as AWS\'s test suite does', () => {
    const h = signApiRequest({ method: 'POST', url: new URL('https://example.amazonaws.com/'), body: 'Param1=value1', contentType: 'application/x-www-form-urlencoded', ...at }, SUITE);
    expect(h.authorization).to.equal('AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a');
  });

  it('signs and sends the session token of temporary credentials, and refuses a path or query it does not canonicalise', () => {
    const h = signApiRequest({ method: 'POST', url: new URL('https://example.amazonaws.com/'), body: 'Param1=value1', contentType: 'application/x-www-form-urlencoded', ...at }, { ...SUITE, sessionToken: 'tok+en/=' });
    expect(h['x-amz-security-token']).to.equal('tok+en/=');
    expect(h.authorization).to.contain('SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, ');
    expect(() => signApiRequest({ method: 'GET', url: new URL('https://example.amazonaws.com/a%20b'), body: '', ...at }, SUITE)).to.throw(/signs paths of unreserved characters only/);
  });

  it('signs get-vanilla-query-order-key-case (the query sorted) and get-unreserved (a path) as AWS\'s test suite does, the forms of EFS\'s DescribeMountTargets', () => {
    const query = signApiRequest({ method: 'GET', url: new URL('https://example.amazonaws.com/?Param2=value2&Param1=value1'), body: '', ...at }, SUITE);
    expect(query.authorization).to.equal('AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500');
    const path = signApiRequest({ method: 'GET', url: new URL('https://example.amazonaws.com/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'), body: '', ...at }, SUITE);
    expect(path.authorization).to.equal('AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f');
  });
});
