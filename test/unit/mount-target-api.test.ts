// DescribeMountTargets' answers as the EFS API gives them, from a stand-in on
// loopback: which mount target is taken, and what is said when none is.
import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { NoMountTarget, mountTargetFromApi, type MountTargetQuery } from '../../daemon/mount-target-api.js';

const CREDENTIALS = { accessKeyId: 'AKIDUNIT', secretAccessKey: 'secret', sessionToken: null, expiration: null, source: 'credentials:default' };

const target = (id: string, zoneId: string, zone: string, state = 'available', address: Record<string, string> = { IpAddress: `10.0.0.${id.slice(-1)}` }) => ({
  MountTargetId: `fsmt-0000000000000000${id.slice(-1)}`, FileSystemId: 'fs-0000ab01', LifeCycleState: state, AvailabilityZoneId: zoneId, AvailabilityZoneName: zone, ...address,
});

describe('the EFS API\'s mount target for a name DNS has no address for', () => {
  let server: Server;
  let answer: { status: number; body: string } = { status: 200, body: '{}' };
  const query = (q: Partial<MountTargetQuery> = {}): MountTargetQuery => ({
    fsId: 'fs-0000ab01', region: 'us-east-1', apiUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, az: null, azId: null, ...q,
  });
  const respond = (status: number, body: unknown): void => {
    answer = { status, body: typeof body === 'string' ? body : JSON.stringify(body) };
  };
  const refusal = async (q: Partial<MountTargetQuery> = {}): Promise<NoMountTarget> => {
    try {
      await mountTargetFromApi(query(q), CREDENTIALS);
    } catch (err) {
      expect(err).to.be.instanceOf(NoMountTarget);
      return err as NoMountTarget;
    }
    throw new Error('a mount target was given');
  };

  before(async () => {
    server = createServer((_req, res) => void res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('takes the available mount target of this instance\'s zone ID, or of the zone az= names, and names it', async () => {
    respond(200, { MountTargets: [target('1', 'use1-az1', 'us-east-1a'), target('2', 'use1-az2', 'us-east-1b')] });
    expect(await mountTargetFromApi(query({ azId: 'use1-az2' }), CREDENTIALS)).to.deep.equal({ address: '10.0.0.2', description: 'fsmt-00000000000000002 in use1-az2 (us-east-1b)' });
    expect(await mountTargetFromApi(query({ az: 'us-east-1a' }), CREDENTIALS)).to.deep.equal({ address: '10.0.0.1', description: 'fsmt-00000000000000001 in use1-az1 (us-east-1a)' });
  });

  it('takes the first available one by zone ID when no zone is known (off EC2), and an IPv6 address when it has no IPv4 one', async () => {
    respond(200, { MountTargets: [target('3', 'use1-az3', 'us-east-1c'), target('2', 'use1-az2', 'us-east-1b', 'available', { Ipv6Address: 'fd00::2' }), target('1', 'use1-az1', 'us-east-1a', 'creating')] });
    expect((await mountTargetFromApi(query(), CREDENTIALS)).address).to.equal('fd00::2');
  });

  it('says, in efs-utils\' words, that there is no mount target, none available yet, none in the zone, or the zone\'s is not available', async () => {
    respond(200, { MountTargets: [] });
    expect(await refusal({ azId: 'use1-az2' })).to.deep.include({ message: 'Cannot find mount target for the file system fs-0000ab01, please create a mount target in use1-az2.', answered: true });
    respond(200, { MountTargets: [target('1', 'use1-az1', 'us-east-1a', 'creating')] });
    expect(await refusal()).to.deep.include({ message: 'No mount target created for the file system fs-0000ab01 is in available state yet, please retry in 5 minutes.', answered: false });
    respond(200, { MountTargets: [target('1', 'use1-az1', 'us-east-1a'), target('2', 'use1-az2', 'us-east-1b', 'updating')] });
    expect((await refusal({ azId: 'use1-az4' })).message).to.equal('No matching mount target in the az use1-az4. Please create one mount target in use1-az4, or try the mount target in another AZ by passing the availability zone name option. Available mount target(s) are in az us-east-1a');
    expect(await refusal({ az: 'us-east-1b' })).to.deep.include({
      message: 'Mount target in the az us-east-1b is updating, please retry in 5 minutes, or use the mount target in the other az by passing the availability zone name option. Available mount target(s) are in az us-east-1a',
      answered: false,
    });
  });

  it('says what the API refused and with whose credentials, and takes throttling, a failure of the service or an answer that is not JSON as passing', async () => {
    respond(403, { ErrorCode: 'AccessDeniedException', Message: 'User is not authorized to perform: elasticfilesystem:DescribeMountTargets' });
    expect(await refusal()).to.deep.include({
      message: 'the EFS API refused DescribeMountTargets with the credentials from credentials:default (HTTP 403 AccessDeniedException: User is not authorized to perform: elasticfilesystem:DescribeMountTargets)',
      answered: true,
    });
    respond(400, { ErrorCode: 'ThrottlingException', Message: 'Rate exceeded' });
    expect((await refusal()).answered).to.equal(false);
    respond(503, 'null');
    expect(await refusal()).to.deep.include({ message: 'the EFS API refused DescribeMountTargets with the credentials from credentials:default (HTTP 503)', answered: false });
    respond(500, '<html>busy</html>');
    expect((await refusal()).answered).to.equal(false);
  });

  it('says where it could not connect', async () => {
    const err = await refusal({ apiUrl: 'http://127.0.0.1:1/' });
    expect(err.answered).to.equal(false);
    expect(err.message).to.match(/^could not connect to the EFS API at http:\/\/127\.0\.0\.1:1\/ for DescribeMountTargets \(connect ECONNREFUSED 127\.0\.0\.1:1\)$/);
  });
});
