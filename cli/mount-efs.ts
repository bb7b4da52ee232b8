// mount.efs: the helper util-linux runs for `mount -t efs` and fstab lines of
// type efs. It hands the work to efs-relayd, like `efsctl attach`.
// Exit codes follow mount(8): 0 done, 1 bad usage or permissions (and bad
// options, as in efs-utils), 32 the mount failed or the daemon is unreachable.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../daemon/config.js';
import { RelayError, asRelayError } from '../daemon/errors.js';
import { attachOptions } from '../daemon/options.js';
import { isAlias, joinHost, requireSpec } from '../daemon/target.js';
import type { AttachResult } from '../daemon/mounter.js';
import { VERSION } from '../daemon/version.js';
import { call, callerRegionEnv } from './client.js';

const USAGE = `Usage: mount.efs SPEC DIR [-fnsv] [-o OPTIONS]

Mounts an EFS file system through an efs-relayd TLS tunnel.
  SPEC        fs-12345678, fs-12345678:/path, or with :/path the file system's DNS name
              or a DNS alias whose CNAME records lead to it
  DIR         the mount point (an existing directory)
  -o OPTIONS  efs-utils mount options (tls, region=, mounttargetip=, …) and NFS options
  -f          fake: check everything and print the mount command, but mount nothing
  -v          verbose: print the mount command and the tunnel
  -n, -s      accepted for util-linux, no effect
  -h, --help  this text
  --version   print the version

The daemon's socket comes from the config file (EFS_RELAY_CONFIG, default ${DEFAULT_CONFIG_PATH}).
Exit codes: 0 mounted, 1 bad usage, permissions or options, 32 the mount failed.`;

const EXIT = { ok: 0, usage: 1, failed: 32 } as const;

function fail(err: RelayError, exit: number): number {
  process.stderr.write(`mount.efs: ${err.message} [${err.code}]\nmount.efs: ${err.hint}\n`);
  return exit;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        options: { type: 'string', short: 'o' },
        fake: { type: 'boolean', short: 'f' },
        verbose: { type: 'boolean', short: 'v' },
        'no-mtab': { type: 'boolean', short: 'n' },
        sloppy: { type: 'boolean', short: 's' },
        type: { type: 'string', short: 't' },
        namespace: { type: 'string', short: 'N' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    process.stderr.write(`mount.efs: ${(err as Error).message} [USAGE]\n${USAGE}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return EXIT.ok;
  }
  if (values.version) {
    process.stdout.write(`mount.efs ${VERSION}\n`);
    return EXIT.ok;
  }
  if (process.getuid?.() !== 0) return fail(new RelayError('NOT_ROOT', 'only root can mount file systems with mount.efs'), EXIT.usage);
  if (positionals.length !== 2) {
    process.stderr.write(`mount.efs: expected SPEC and DIR, got ${positionals.length} argument${positionals.length === 1 ? '' : 's'} [USAGE]\n${USAGE}\n`);
    return EXIT.usage;
  }
  const [specText, dirArg] = positionals as [string, string];
  const options = values.options ?? '';

  let cfg;
  try {
    cfg = await loadConfig(process.env.EFS_RELAY_CONFIG || DEFAULT_CONFIG_PATH);
  } catch (err) {
    return fail(asRelayError(err), EXIT.usage);
  }

  let spec;
  try {
    spec = requireSpec(specText);
    // An alias's az is known only once the daemon has followed it.
    attachOptions(options, isAlias(spec) ? {} : spec);
  } catch (err) {
    return fail(asRelayError(err), EXIT.usage);
  }

  // efs-utils: at boot, a line without _netdev may run before the network is up; say so and exit 0,
  // so the boot does not fail on it.
  const opts = options.split(',');
  if (!opts.includes('_netdev') && cfg.mount.network_check !== '') {
    const r = spawnSync('sh', ['-c', cfg.mount.network_check], { stdio: 'ignore' });
    if (r.status !== 0) {
      process.stderr.write(
        `mount.efs: Failed to mount ${isAlias(spec) ? spec.alias : spec.fsId} because the network was not yet available, add "_netdev" to your mount options [NETWORK_NOT_READY]\n`,
      );
      return EXIT.ok;
    }
  }

  const env = callerRegionEnv();
  let res: AttachResult;
  try {
    // A daemon that is restarting (systemctl restart, or a crash that systemd restarts) is waited for.
    res = (await call(cfg.control_socket, 'attach', {
      spec: specText, dir: resolve(dirArg), options, env, source: 'mount.efs', fake: values.fake ?? false,
    }, 150_000, cfg.mount.daemon_wait * 1000, (text) => process.stderr.write(`mount.efs: ${text}\n`))) as AttachResult;
  } catch (err) {
    const e = asRelayError(err);
    const usage = ['BAD_FS_ID', 'BAD_OPTION', 'UNKNOWN_OPTION', 'NO_REGION', 'BAD_MOUNT_POINT'].includes(e.code);
    return fail(e, usage ? EXIT.usage : EXIT.failed);
  }
  if (values.verbose || values.fake) {
    process.stdout.write(`${res.fake ? 'would run' : 'ran'}: ${res.command.join(' ')}\n`);
    if (res.tunnel) process.stdout.write(`tunnel: 127.0.0.1:${res.tunnel.port} → ${joinHost(res.tunnel.target.address, res.tunnel.target.port)} (certificate must name ${res.tunnel.target.cert_name})\n`);
  }
  if (res.already_mounted) process.stdout.write(`mount.efs: ${res.dir} is already mounted from ${res.fs_id}\n`);
  return EXIT.ok;
}

// Not top-level await: the same module also runs inside the single-executable build (CommonJS).
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
