// Loads /etc/efs-relay/config.yaml. Every key has a default; a missing file
// means all defaults. Any problem is one RelayError whose message names the
// file, the line and the key, so start-up fails with one clear line.
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { LineCounter, parseDocument, isMap, isScalar, type Node as YamlNode, type Pair } from 'yaml';
import { RelayError } from './errors.js';
import { REGION } from './options.js';

export const DEFAULT_CONFIG_PATH = '/etc/efs-relay/config.yaml';

export interface Config {
  state_dir: string;
  control_socket: string;
  fstab: string;
  port_range: { first: number; last: number };
  metrics: { listen: string; allow_remote: boolean };
  tls: { ca_file: string; max_version: 'TLSv1.2' | 'TLSv1.3'; ocsp: boolean };
  efs: { region: string; metadata_url: string; dns_name_format: string; dns_name_suffix: string; port: number; mount_target_fallback: boolean; api_url: string };
  mount: {
    command: string;
    umount_command: string;
    proc_mounts: string;
    poll_interval: number;
    unmount_reads: number;
    unmount_grace: number;
    network_check: string;
    daemon_wait: number;
    efs_utils_state_dir: string;
    optimize_readahead: boolean;
    bdi_dir: string;
  };
  relay: { connect_timeout: number; close_timeout: number };
  iam: { credentials_file: string; config_file: string; ecs_url: string; sts_url: string };
  log: { level: 'debug' | 'info' | 'warn' | 'error' };
  health: { probe_interval: number; probe_timeout: number; stat_command: string; stat_timeout: number; trust_check_interval: number };
  policy: { require_tls: boolean };
}

type Field =
  | { kind: 'path'; def: string }
  | { kind: 'string'; def: string; pattern?: RegExp; describe?: string }
  | { kind: 'port'; def: number }
  | { kind: 'seconds'; def: number; zeroOk?: boolean }
  | { kind: 'count'; def: number; min: number; max: number }
  | { kind: 'enum'; def: string; values: readonly string[] }
  | { kind: 'bool'; def: boolean }
  | { kind: 'section'; fields: Record<string, Field> };

// control_socket defaults to <state_dir>/control.sock; filled in after parsing.
const SCHEMA: Record<string, Field> = {
  state_dir: { kind: 'path', def: '/run/efs-relay' },
  control_socket: { kind: 'path', def: '' },
  fstab: { kind: 'path', def: '/etc/fstab' },
  port_range: {
    kind: 'section',
    fields: { first: { kind: 'port', def: 20049 }, last: { kind: 'port', def: 21048 } },
  },
  metrics: {
    kind: 'section',
    fields: {
      listen: { kind: 'string', def: '127.0.0.1:9792', pattern: /^$|^[^\s]+:\d{1,5}$/, describe: 'HOST:PORT or an empty string' },
      allow_remote: { kind: 'bool', def: false },
    },
  },
  tls: {
    kind: 'section',
    fields: {
      ca_file: { kind: 'path', def: '/etc/efs-relay/amazon-root-cas.pem' },
      max_version: { kind: 'enum', def: 'TLSv1.2', values: ['TLSv1.2', 'TLSv1.3'] },
      // efs-utils' stunnel_check_cert_validity: whether a tunnel without ocsp or noocsp asks OCSP responders.
      ocsp: { kind: 'bool', def: false },
    },
  },
  efs: {
    kind: 'section',
    fields: {
      // The region= option's form (options.ts), or "".
      region: { kind: 'string', def: '', pattern: new RegExp(`^$|${REGION.source}`), describe: 'an AWS region like us-east-1' },
      // EC2 instance metadata, asked for the region when efs.region is not set ("" = never asked).
      metadata_url: { kind: 'string', def: 'http://169.254.169.254', pattern: /^$|^http:\/\/[^/\s]+$/, describe: 'an http:// address with no path, like http://169.254.169.254, or "" for none' },
      dns_name_format: {
        kind: 'string',
        def: '{az}.{fs_id}.efs.{region}.{dns_name_suffix}',
        pattern: /\{fs_id\}/,
        describe: 'a format that contains {fs_id}',
      },
      // "": each region's own suffix, as efs-utils' [mount.REGION] sections give it (target.ts, dnsNameSuffix).
      dns_name_suffix: { kind: 'string', def: '', pattern: /^$|^[a-z0-9.-]+$/, describe: 'a DNS suffix like amazonaws.com, or "" for each region\'s own' },
      port: { kind: 'port', def: 2049 },
      // efs-utils' fall_back_to_mount_target_ip_address_enabled: DNS has no address for a file system's name, so
      // the EFS API's DescribeMountTargets says where its mount target is (mount-target-api.ts).
      mount_target_fallback: { kind: 'bool', def: true },
      api_url: { kind: 'string', def: '', pattern: /^$|^https:\/\/[^/\s@]+\/$/, describe: 'an https:// address ending in /, like https://elasticfilesystem.us-east-1.amazonaws.com/, or "" for each region\'s own' },
    },
  },
  mount: {
    kind: 'section',
    fields: {
      command: { kind: 'path', def: '/sbin/mount.nfs4' },
      umount_command: { kind: 'path', def: '/bin/umount' },
      proc_mounts: { kind: 'path', def: '/proc/mounts' },
      // efs-utils' watchdog: an unmount counts only after this many consistent reads and this grace period.
      poll_interval: { kind: 'seconds', def: 1 },
      unmount_reads: { kind: 'count', def: 5, min: 1, max: 1000 },
      unmount_grace: { kind: 'seconds', def: 30, zeroOk: true },
      // mount.efs: a shell command whose failure means "the network is not up yet" (efs-utils checks network.target).
      network_check: { kind: 'string', def: 'test ! -d /run/systemd/system || systemctl is-active --quiet network.target' },
      // mount.efs: how long a daemon that is not listening yet (restarting) is waited for.
      daemon_wait: { kind: 'seconds', def: 10, zeroOk: true },
      // efsctl takeover: where amazon-efs-utils kept its stunnel configs, to revive a mount whose stunnel died.
      efs_utils_state_dir: { kind: 'path', def: '/var/run/efs' },
      // efs-utils' optimize_readahead: after each mount, its read_ahead_kb in bdi_dir goes to 15 × rsize (readahead.ts).
      optimize_readahead: { kind: 'bool', def: true },
      bdi_dir: { kind: 'path', def: '/sys/class/bdi' },
    },
  },
  relay: {
    kind: 'section',
    fields: {
      connect_timeout: { kind: 'seconds', def: 15 },
      close_timeout: { kind: 'seconds', def: 10 },
    },
  },
  // Where IAM mounts' AWS credentials are looked for (aws-credentials.ts): root's, as efs-utils' mount helper reads them.
  iam: {
    kind: 'section',
    fields: {
      credentials_file: { kind: 'path', def: '/root/.aws/credentials' },
      config_file: { kind: 'path', def: '/root/.aws/config' },
      // The ECS agent, which awscredsuri= paths are asked of.
      ecs_url: { kind: 'string', def: 'http://169.254.170.2', pattern: /^http:\/\/[^/\s@]+$/, describe: 'an http:// address with no path, like http://169.254.170.2' },
      // AWS STS, which exchanges web identities (rolearn=, jwtpath=) for credentials; "" = the file system's region's own.
      sts_url: { kind: 'string', def: '', pattern: /^$|^https:\/\/[^/\s@]+\/$/, describe: 'an https:// address ending in /, like https://sts.us-east-1.amazonaws.com/, or "" for each region\'s own' },
    },
  },
  log: {
    kind: 'section',
    fields: { level: { kind: 'enum', def: 'info', values: ['debug', 'info', 'warn', 'error'] } },
  },
  health: {
    kind: 'section',
    fields: {
      // 0 turns health probes off.
      probe_interval: { kind: 'seconds', def: 30, zeroOk: true },
      probe_timeout: { kind: 'seconds', def: 10 },
      // Run as `stat_command DIR` in a child process, so a hung mount cannot block the daemon.
      stat_command: { kind: 'path', def: '/usr/bin/stat' },
      stat_timeout: { kind: 'seconds', def: 5 },
      // How often the CA bundles and the config file are checked for being changeable by another user than root; 0 = only when read.
      trust_check_interval: { kind: 'seconds', def: 60, zeroOk: true },
    },
  },
  policy: {
    kind: 'section',
    fields: { require_tls: { kind: 'bool', def: true } },
  },
};

function defaultsOf(fields: Record<string, Field>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(fields)) out[k] = f.kind === 'section' ? defaultsOf(f.fields) : f.def;
  return out;
}

function finish(raw: Record<string, unknown>): Config {
  const cfg = raw as unknown as Config;
  if (cfg.control_socket === '') cfg.control_socket = `${cfg.state_dir.replace(/\/+$/, '')}/control.sock`;
  return cfg;
}

export function defaultConfig(): Config {
  return finish(defaultsOf(SCHEMA));
}

/** Read and validate a config file. A missing file gives the defaults. */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return defaultConfig();
    throw new RelayError('CONFIG_INVALID', `${file}: cannot read: ${(err as Error).message}`);
  }
  return parseConfig(text, file);
}

export function parseConfig(text: string, file: string): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const lineOf = (node: { range?: [number, number, number] | null } | null | undefined): number =>
    node?.range ? lines.linePos(node.range[0]).line : 1;
  const fail = (line: number, key: string | null, what: string): never => {
    const where = key === null ? `${file}:${line}` : `${file}:${line}: key "${key}"`;
    throw new RelayError('CONFIG_INVALID', `${where}: ${what}`);
  };

  const firstError = doc.errors[0];
  if (firstError) {
    const line = firstError.linePos?.[0]?.line ?? 1;
    fail(line, null, `not valid YAML: ${firstError.message.split('\n')[0]}`);
  }
  const out = defaultsOf(SCHEMA);
  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) return finish(out);
  if (!isMap(root)) fail(lineOf(root as YamlNode), null, 'expected a mapping of keys at the top level');

  const walk = (map: YamlNode, fields: Record<string, Field>, target: Record<string, unknown>, prefix: string): void => {
    if (!isMap(map)) return;
    for (const pair of map.items as Pair<YamlNode, YamlNode>[]) {
      const keyNode = pair.key;
      const name = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
      const key = prefix + name;
      const line = lineOf(keyNode);
      const field = fields[name];
      if (!field) {
        const known = Object.keys(fields).join(', ');
        fail(line, key, `unknown key (known keys${prefix ? ` in ${prefix.slice(0, -1)}` : ''}: ${known})`);
        return;
      }
      const valueNode = pair.value;
      if (field.kind === 'section') {
        if (valueNode === null || (isScalar(valueNode) && valueNode.value === null)) continue;
        if (!isMap(valueNode)) fail(line, key, 'expected a mapping of keys');
        walk(valueNode, field.fields, target[name] as Record<string, unknown>, `${key}.`);
        continue;
      }
      if (!isScalar(valueNode)) {
        fail(line, key, 'expected a single value, got a list or mapping');
        return;
      }
      target[name] = checkValue(field, valueNode.value, (what) => fail(lineOf(valueNode) || line, key, what));
    }
  };
  walk(root as YamlNode, SCHEMA, out, '');

  const cfg = finish(out);
  const pr = cfg.port_range;
  if (pr.first > pr.last) {
    const prKey = isMap(root) ? (root.items as Pair<YamlNode, YamlNode>[]).find((p) => isScalar(p.key) && p.key.value === 'port_range')?.key : null;
    fail(lineOf(prKey), 'port_range', `first (${pr.first}) is greater than last (${pr.last})`);
  }
  return cfg;
}

function checkValue(field: Exclude<Field, { kind: 'section' }>, value: unknown, fail: (what: string) => never): unknown {
  const shown = value === null ? 'nothing' : JSON.stringify(value);
  switch (field.kind) {
    case 'path':
      if (typeof value !== 'string' || !isAbsolute(value)) return fail(`expected an absolute path, got ${shown}`);
      return value;
    case 'string':
      if (value === null) return '';
      if (typeof value !== 'string') return fail(`expected a string, got ${shown}`);
      if (field.pattern && !field.pattern.test(value)) return fail(`expected ${field.describe ?? 'a valid value'}, got ${shown}`);
      return value;
    case 'port':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535)
        return fail(`expected an integer port from 1 to 65535, got ${shown}`);
      return value;
    case 'seconds':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (value === 0 && !field.zeroOk) || value > 3600)
        return fail(`expected a number of seconds ${field.zeroOk ? 'from 0 to 3600' : 'above 0 and at most 3600'}, got ${shown}`);
      return value;
    case 'count':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < field.min || value > field.max)
        return fail(`expected an integer from ${field.min} to ${field.max}, got ${shown}`);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') return fail(`expected true or false, got ${shown}`);
      return value;
    case 'enum':
      if (typeof value !== 'string' || !field.values.includes(value))
        return fail(`expected one of ${field.values.join(', ')}, got ${shown}`);
      return value;
  }
}

/** "HOST:PORT" (HOST may be [v6]) → its parts. */
export function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}
