// The whole local EFS stand-in in one call: ganesha, a TLS mount target in
// front of it with a certificate for FS_NAME, and a daemon that trusts its CA.
import { Daemon } from './daemon.js';
import { daemonConfig, testCerts } from './fixtures.js';
import { MountTargetStandIn } from './mount-target.js';
import { Ganesha } from './nfs.js';

export interface NfsStack {
  ganesha: Ganesha;
  target: MountTargetStandIn;
  daemon: Daemon;
  stop(): Promise<void>;
}

export async function startNfsStack(address: string, firstPort: number, record = false): Promise<NfsStack> {
  const ganesha = await Ganesha.get();
  const target = await new MountTargetStandIn({
    host: address, port: 2049, cert: testCerts().good, backend: { host: '127.0.0.1', port: ganesha.nfsPort }, record,
  }).start();
  const daemon = await new Daemon(daemonConfig(firstPort)).start();
  return {
    ganesha, target, daemon,
    async stop() {
      await daemon.stop();
      await target.stop();
    },
  };
}
