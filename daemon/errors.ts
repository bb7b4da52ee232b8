// The one table of error codes. The daemon's log, the control protocol, the
// CLI and the metrics all carry these codes; callers branch on `code`, users
// read `message` (what failed and why) and `hint` (what to do).
//
// `final` marks a connection failure that every retry meets again until
// someone changes something (the address, the certificate, the CA bundle): a
// mount that meets one is not tried again. The certificate's dates are not
// final: at boot the clock may still be stepped into place.

export const ERRORS = {
  CONFIG_INVALID: {
    title: 'the configuration file is invalid',
    hint: 'Fix the named key (see the configuration reference in the README), or delete it to use the default.',
  },
  STATE_FILE_INVALID: {
    title: 'a file in the state directory is not a valid tunnel record',
    hint: 'Move the file out of the state directory, or repair it; the daemon skips it until then.',
  },
  STATE_WRITE_FAILED: {
    title: 'a file in the state directory could not be written',
    hint: 'Free space in the state directory\'s file system (/run is a small tmpfs: `df -h /run`) or make it writable again (its permissions, or a file system mounted read-only), then repeat the request. Running tunnels are not affected, and what the daemon records on its own (a mount that appeared or went) is tried again.',
  },
  BAD_FS_ID: {
    title: 'invalid file system id',
    hint: 'Use the id shown in the EFS console, like fs-12345678.',
  },
  BAD_OPTION: {
    title: 'invalid mount option',
    hint: 'Check the option against the efs-utils option list in the README.',
  },
  UNKNOWN_OPTION: {
    title: 'unknown option',
    hint: '`efsctl add` takes tunnel options only: tls, tlsport, region, az, crossaccount, mounttargetip, accesspoint, iam, awsprofile, awscredsuri, rolearn, jwtpath, cafile, verify, ocsp, noocsp, netns.',
  },
  NO_REGION: {
    title: 'no AWS region is known for the file system',
    hint: 'Pass -o region=REGION, set AWS_REGION, or set efs.region in the config file.',
  },
  NO_AZ_ID: {
    title: 'this instance\'s availability zone ID is not known, and a crossaccount mount needs it',
    hint: 'The crossaccount option reaches the mount target of this instance\'s availability zone ID, which only instance metadata (efs.metadata_url) gives: check that the metadata service answers (`efsctl doctor`), or mount without crossaccount, with -o az=ZONE or -o mounttargetip=ADDRESS.',
  },
  NO_AWS_CREDENTIALS: {
    title: 'no AWS credentials to sign an IAM mount with',
    hint: 'Give root AWS keys (aws_access_key_id and aws_secret_access_key in iam.credentials_file, under [default] or the profile that awsprofile= names), attach an IAM role to the instance (instance metadata must answer: `efsctl doctor`), or on ECS pass -o awscredsuri=PATH. Then mount again; a running tunnel tries again every 10 minutes.',
  },
  PORT_TAKEN: {
    title: 'the local port is already in use',
    hint: 'Choose another tlsport=, or stop whatever listens on that port (`ss -ltnp`).',
  },
  PORT_CLAIMED: {
    title: 'an efs-utils mount of another file system goes through the local port',
    hint: 'A local port serves one file system. Unmount the mount named in the message, and the tunnel takes its port within 5 s; or, to keep that mount, unmount this file system\'s mounts through the port, `efsctl stop FS`, and mount them again on a new port.',
  },
  PORT_OUT_OF_RANGE: {
    title: 'the local port is outside the configured range',
    hint: 'Pick a tlsport= inside port_range, or widen port_range in the config file.',
  },
  PORTS_EXHAUSTED: {
    title: 'no free local port is left in the configured range',
    hint: 'Stop unused tunnels (`efsctl list`), unmount what `efsctl stop --force` left mounted, or widen port_range in the config file.',
  },
  LISTEN_NOT_LOOPBACK: {
    title: 'a relay may only listen on a loopback address',
    hint: 'Relays accept plaintext NFS; they must listen on 127.0.0.1 only.',
  },
  LISTEN_FAILED: {
    title: 'the relay could not listen on its port',
    hint: 'See the cause; the daemon retries the listener every few seconds.',
  },
  NETNS_FAILED: {
    title: 'the network namespace of netns= cannot be entered',
    hint: 'Check that the path names a network namespace that exists now (`ip netns list` for /var/run/netns/NAME, or /proc/PID/ns/net of a process that runs in it) and that nsenter (util-linux) is installed. A tunnel that is already running keeps trying every few seconds.',
  },
  TUNNEL_NOT_FOUND: {
    title: 'no tunnel exists for that file system',
    hint: 'Run `efsctl list` to see the tunnels, or `efsctl add FS_ID` to start one.',
  },
  TLS_UNTRUSTED_CHAIN: {
    title: 'the server certificate chain is not signed by a trusted CA',
    hint: 'Check tls.ca_file and that the address really is an EFS mount target; the connection was refused.',
    final: true,
  },
  TLS_SELF_SIGNED: {
    title: 'the server presented a self-signed certificate',
    hint: 'The address is not a genuine EFS mount target, or something intercepts TLS; the connection was refused.',
    final: true,
  },
  TLS_HOSTNAME_MISMATCH: {
    title: 'the server certificate is not for this file system',
    hint: 'Check the file system id, region and mounttargetip=; the certificate names another host.',
    final: true,
  },
  TLS_CERT_NOT_IN_BUNDLE: {
    title: 'the server certificate is not in the CA bundle, which verify=3 requires',
    hint: 'verify=3 (as stunnel\'s level 3) trusts only a server certificate that the CA bundle itself holds: add the mount target\'s certificate to its cafile=, or leave verify= out (verify=2, the default, trusts what the bundle\'s CAs issued for the file system name).',
    final: true,
  },
  TLS_CERT_EXPIRED: {
    title: 'the server certificate has expired',
    hint: 'Check the system clock (`timedatectl`); if it is right, the server certificate really is expired.',
  },
  TLS_CERT_NOT_YET_VALID: {
    title: 'the server certificate is not valid yet',
    hint: 'Check the system clock (`timedatectl`).',
  },
  TLS_CERT_REVOKED: {
    title: 'the server certificate, or a CA certificate of its chain, is revoked',
    hint: 'Its OCSP responder (the `ocsp` option) says it was revoked: the address does not answer as the file system\'s mount target should. Check mounttargetip= and DNS; nothing was sent to it.',
    final: true,
  },
  TLS_CERT_STATUS_UNKNOWN: {
    title: 'no OCSP responder said whether the server certificate is good',
    hint: 'The `ocsp` option needs an answer from the responders the certificates name (their Authority Information Access URLs, over HTTP): check that this host can reach them (an HTTP proxy is not used), and its clock. Leave out `ocsp` (efs-utils\' default) to connect without asking.',
  },
  TLS_PROTOCOL_REFUSED: {
    title: 'the server refused our TLS version',
    hint: 'The server accepts none of the TLS versions the policy allows (TLS 1.2, or up to tls.max_version).',
    final: true,
  },
  TLS_PROTOCOL_DOWNGRADE: {
    title: 'the server offered a TLS version older than 1.2',
    hint: 'TLS 1.0 and 1.1 are never accepted; the address is not a current EFS mount target.',
    final: true,
  },
  TLS_CIPHER_REFUSED: {
    title: 'the server offered no AES-256-GCM cipher suite',
    hint: 'Only AES-256-GCM suites are accepted; the server must offer one.',
    final: true,
  },
  TLS_HANDSHAKE_FAILED: {
    title: 'the TLS handshake failed',
    hint: 'See the cause; the connection was refused and nothing was sent in plaintext.',
  },
  TLS_RENEGOTIATION_REFUSED: {
    title: 'the mount target asked to renegotiate the TLS session, which the policy refuses',
    hint: 'efs-relay, like efs-utils\' stunnel (renegotiation = no), never renegotiates; the connection was closed and the NFS client reconnects. A genuine EFS mount target does not ask: check what answers at the mount target address.',
  },
  TLS_SESSION_FAILED: {
    title: 'an established TLS session failed',
    hint: 'A record did not decrypt or the server sent a fatal alert: the connection was closed and nothing of it was passed on. If it repeats, something on the path alters traffic; check the network path to the mount target.',
  },
  FD_LIMIT: {
    title: 'efs-relayd ran out of file descriptors',
    hint: 'Each relayed connection takes two: raise LimitNOFILE for efs-relayd (systemctl edit efs-relayd), or find what holds so many connections to the tunnel ports (`ss -tnp`).',
  },
  CONNECT_TIMEOUT: {
    title: 'the mount target did not answer in time',
    hint: 'Check security groups (TCP 2049 from this host) and the mount target address.',
  },
  CONNECT_REFUSED: {
    title: 'the mount target refused the TCP connection',
    hint: 'Check the mount target address and that it serves port 2049.',
  },
  UPSTREAM_RESET: {
    title: 'the connection to the mount target was reset',
    hint: 'Usually transient; if it repeats, check the network path to the mount target.',
  },
  DNS_FAILED: {
    title: 'DNS gave no address for the file system name: it answered that there is none, or did not answer',
    hint: 'Check the file system id and region, and that the file system has a mount target in this VPC (in the az= zone when one is given); if it has, check the resolver (`getent hosts NAME` shows what the daemon gets), or pass -o mounttargetip=ADDRESS.',
  },
  CA_BUNDLE_UNREADABLE: {
    title: 'the CA bundle cannot be read',
    hint: 'Check tls.ca_file; the package installs /etc/efs-relay/amazon-root-cas.pem.',
  },
  FSTAB_UNREADABLE: {
    title: 'the fstab file cannot be read',
    hint: 'Make the file that the config key fstab names (/etc/fstab by default) a readable regular file again. Until then efs-relayd keeps the tunnels of its lines as they were, and it reads the file again on its own.',
  },
  TRUST_FILE_WRITABLE: {
    title: 'a file the TLS verification depends on can be changed by a user other than root',
    hint: 'Make the file and each directory above it owned by root and not writable by group or others (`chown root:root PATH`, `chmod go-w PATH`): whoever can change a CA bundle can make tunnels trust a CA of their own, and whoever can change the config file can point tls.ca_file at one. The daemon uses the file all the same, so that no tunnel is dropped.',
  },
  TAKEOVER_NOT_STUNNEL: {
    title: 'the directory is not an NFS mount that an efs-utils stunnel serves',
    hint: '`efsctl takeover` moves mounts made by amazon-efs-utils (mount -t efs -o tls with stunnel); `efsctl doctor` (the mounts check) names what serves each mount\'s local port.',
  },
  TAKEOVER_UNSAFE: {
    title: 'taking the mount over could leave it without a working tunnel',
    hint: 'Nothing was changed. Unmount the directory and mount it again through efs-relay (`mount -t efs -o tls FS_ID DIR` or `efsctl attach`), or remove the cause the message names and try again.',
  },
  TUNNEL_MOUNTED: {
    title: 'the tunnel is in use by a mount',
    hint: 'Unmount first, or pass --force to stop it anyway (the mount will hang until the tunnel returns).',
  },
  MOUNT_FAILED: {
    title: 'the NFS mount command failed',
    hint: 'Read the mount command\'s own message above; the tunnel was left as it was before.',
  },
  UMOUNT_FAILED: {
    title: 'the unmount command failed',
    hint: 'Check that nothing uses the directory (`fuser -m DIR`); the mount and its tunnel are unchanged.',
  },
  NOT_MOUNTED: {
    title: 'the directory is not mounted through efs-relay',
    hint: 'Run `efsctl list` to see the mounts of each tunnel.',
  },
  BAD_MOUNT_POINT: {
    title: 'the mount point is missing or not a directory',
    hint: 'Create the directory first (`mkdir -p DIR`).',
  },
  NOT_ROOT: {
    title: 'this command must run as root',
    hint: 'Run it with sudo, or as root.',
  },
  NETWORK_NOT_READY: {
    title: 'the network is not up yet',
    hint: 'Add "_netdev" to the fstab mount options so the mount waits for the network.',
  },
  MOUNT_HUNG: {
    title: 'a mounted directory did not answer stat in time',
    hint: 'The NFS mount is hung: check `efsctl status` for the tunnel\'s probe, and the network path to the mount target.',
  },
  MOUNT_STAT_FAILED: {
    title: 'stat of a mounted directory failed',
    hint: 'See the message (e.g. a stale file handle); remount the file system.',
  },
  UNENCRYPTED_MOUNT: {
    title: 'an NFS mount reaches EFS without TLS',
    hint: 'Unmount it and mount again with `efsctl attach` or `mount -t efs -o tls`.',
  },
  TLS_REQUIRED: {
    title: 'policy requires TLS for EFS mounts',
    hint: 'Drop "notls", or set policy.require_tls: false in the config file to allow plaintext mounts.',
  },
  CONTROL_BAD_REQUEST: {
    title: 'the control request is malformed',
    hint: 'Send one JSON object per line: {"v":1,"id":N,"method":"…","params":{…}}.',
  },
  CONTROL_REQUEST_TOO_LARGE: {
    title: 'the control request is too large',
    hint: 'Requests are limited to 64 KiB per line.',
  },
  CONTROL_UNKNOWN_METHOD: {
    title: 'the control request names an unknown method',
    hint: 'Check that efsctl and efs-relayd are the same version (`efsctl version`).',
  },
  CONTROL_VERSION_MISMATCH: {
    title: 'the control protocol version is not supported',
    hint: 'Use an efsctl of the same version as the daemon (`efsctl version`).',
  },
  DAEMON_UNREACHABLE: {
    title: 'the efs-relayd daemon cannot be reached',
    hint: 'Start it with `systemctl start efs-relayd` (or run `efs-relayd` as root), or pass --socket PATH.',
  },
  USAGE: {
    title: 'bad usage',
    hint: 'Run `efsctl --help`.',
  },
  INTERNAL: {
    title: 'internal error',
    hint: 'Please report this with the daemon log.',
  },
} as const satisfies Record<string, { title: string; hint: string; final?: true }>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(v: unknown): v is ErrorCode {
  return typeof v === 'string' && Object.hasOwn(ERRORS, v);
}

/** An error the user should see: a stable code, what failed and why, what to do. */
export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  /** A connection failure no retry mends (see `final` above); a code's default, or set for one case (DNS: no such name). */
  readonly final: boolean;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; hint?: string; final?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RelayError';
    this.code = code;
    this.hint = options?.hint ?? ERRORS[code].hint;
    this.final = options?.final ?? 'final' in ERRORS[code];
  }

  toJSON(): ErrorBody {
    return { code: this.code, message: this.message, hint: this.hint };
  }
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  hint: string;
}

/** Any thrown value as a RelayError (unexpected ones become INTERNAL). */
export function asRelayError(err: unknown): RelayError {
  if (err instanceof RelayError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new RelayError('INTERNAL', msg, { cause: err });
}

/** A read error that says nothing of the file read: no descriptor was left to open it (EMFILE, ENFILE). */
export function noDescriptorLeft(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** FD_LIMIT for a read of `path` that found no descriptor to open it with. */
export function noDescriptorError(err: NodeJS.ErrnoException, path: string): RelayError {
  return new RelayError('FD_LIMIT', `Cannot read ${path}: no file descriptor left (${err.code})`, { cause: err });
}
