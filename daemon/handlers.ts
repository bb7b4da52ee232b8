// Control methods → tunnel manager calls. Checks the shape of each request's
// params; the manager checks their meaning.
import { RelayError } from './errors.js';
import type { Handler } from './control.js';
import { onlyTunnelOptions, parseOptions } from './options.js';
import { PROTOCOL_VERSION } from './protocol.js';
import type { RecordSource } from './state.js';
import type { TunnelManager } from './tunnels.js';
import type { Mounter } from './mounter.js';
import type { RegionEnv } from './target.js';
import { VERSION } from './version.js';
import type { ConfigStatus, ReloadOutcome, ReloadResult } from './config-reload.js';
import type { RegionSource } from './instance-region.js';
import type { FstabStatus } from './fstab-watch.js';

const SOURCES: readonly RecordSource[] = ['efsctl', 'mount.efs', 'fstab', 'manual'];

function str(params: Record<string, unknown>, key: string, required: true): string;
function str(params: Record<string, unknown>, key: string, required: false): string | undefined;
function str(params: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const v = params[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string') throw new RelayError('CONTROL_BAD_REQUEST', `Parameter "${key}" must be a string`);
  return v;
}

function bool(params: Record<string, unknown>, key: string): boolean {
  const v = params[key] ?? false;
  if (typeof v !== 'boolean') throw new RelayError('CONTROL_BAD_REQUEST', `Parameter "${key}" must be true or false`);
  return v;
}

function regionEnv(p: Record<string, unknown>): RegionEnv {
  const env = p.env ?? {};
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw new RelayError('CONTROL_BAD_REQUEST', 'Parameter "env" must be an object');
  const e = env as Record<string, unknown>;
  const region = (k: string): string | undefined => (typeof e[k] === 'string' && e[k] !== '' ? (e[k] as string) : undefined);
  // The caller's environment first (efs-utils reads the mounting user's), then the daemon's own.
  return {
    AWS_REGION: region('AWS_REGION') ?? process.env.AWS_REGION,
    AWS_DEFAULT_REGION: region('AWS_DEFAULT_REGION') ?? process.env.AWS_DEFAULT_REGION,
  };
}

function source(p: Record<string, unknown>): RecordSource {
  const s = (str(p, 'source', false) ?? 'efsctl') as RecordSource;
  if (!SOURCES.includes(s)) throw new RelayError('CONTROL_BAD_REQUEST', `Parameter "source" must be one of ${SOURCES.join(', ')}`);
  return s;
}

/** The daemon's config file as `version` reports it, and how to read it again (ConfigReloader). */
export interface ConfigControl {
  reload(): Promise<ReloadOutcome>;
  status(): ConfigStatus;
}

export function controlHandlers(
  manager: TunnelManager, mounter: Mounter, startedAt: Date, config: ConfigControl, region: RegionSource, fstab: FstabStatus,
): Record<string, Handler> {
  return {
    ping: () => ({ pong: true }),
    version: () => ({
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      node: process.version,
      openssl: process.versions.openssl,
      pid: process.pid,
      started_at: startedAt.toISOString(),
      config: config.status(),
      // What instance metadata said of the region, so that doctor judges fstab lines with the daemon's knowledge.
      instance_region: region.current,
    }),
    add: async (p) => {
      const fsId = str(p, 'fs_id', true);
      const options = parseOptions(str(p, 'options', false));
      onlyTunnelOptions(options);
      return manager.add({ fsId, options, env: regionEnv(p), source: source(p) });
    },
    // The running tunnel of fs_id also listens on the port tlsport= names (efsctl takeover of a second efs-utils mount).
    add_port: async (p) => {
      const fsId = str(p, 'fs_id', true);
      const options = parseOptions(str(p, 'options', false));
      onlyTunnelOptions(options);
      return manager.addPort({ fsId, options, env: regionEnv(p), source: source(p) });
    },
    attach: (p) => {
      return mounter.attach({
        spec: str(p, 'spec', true),
        dir: str(p, 'dir', true),
        options: str(p, 'options', false) ?? '',
        env: regionEnv(p),
        source: source(p),
        fake: bool(p, 'fake'),
      });
    },
    detach: (p) => mounter.detach(str(p, 'dir', true)),
    list: () => ({ tunnels: manager.list(), unencrypted_mounts: manager.unencrypted }),
    status: (p) => manager.status(str(p, 'fs_id', true)),
    // Valid fstab lines that got no tunnel at the latest try, so that doctor shows what only the daemon can know.
    fstab: () => ({ file: fstab.file, failures: fstab.failures, read_error: fstab.read_error }),
    stop: (p) => {
      return manager.stop(str(p, 'fs_id', true), bool(p, 'force'));
    },
    reload: async (): Promise<ReloadResult> => {
      const r = await config.reload();
      if (!r.ok) throw r.error;
      return { file: r.file, applied: r.applied, restart_needed: r.restart_needed };
    },
  };
}
