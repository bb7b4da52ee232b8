// efs-utils' per-mount files in its state dir (mount.efs_utils_state_dir,
// /var/run/efs): it names a mount's stunnel config (which efs-utils 2's
// efs-proxy reads too) stunnel-config.FS.MOUNT.PORT, MOUNT being the mount
// point with its slashes as dots. `efsctl takeover` and doctor find a
// mount's config by that name; the daemon reads from the names alone which
// file system an efs-utils mount through a local port belongs to.
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

const CONFIG_NAME = /^stunnel-config\.(fs-[0-9a-f]+)(\..+)$/;

/** What follows the file system in the name of the config of the mount at `dir` through `port`. */
function mountPart(dir: string, port: number): string {
  return `.${dir.replace(/^\/+/, '').replaceAll('/', '.')}.${port}`;
}

/** efs-utils' stunnel configs in `names` (a listing of its state dir), with the file system each names. */
function configs(names: readonly string[]): { name: string; fsId: string; mount: string }[] {
  return names.flatMap((name) => {
    const m = CONFIG_NAME.exec(name);
    return m ? [{ name, fsId: m[1] as string, mount: m[2] as string }] : [];
  });
}

/** A state dir that cannot be listed (no efs-utils ever ran here) has no configs. */
async function listing(stateDir: string): Promise<string[]> {
  return readdir(stateDir).catch(() => []);
}

/**
 * efs-utils' state file of the mount of fsId at `dir` through `port` (FS.MOUNT.PORT, beside its stunnel config): JSON
 * whose awsCredentialsMethod says where an iam mount's credentials came from.
 */
export function efsUtilsStateFile(fsId: string, dir: string, port: number, stateDir: string): string {
  return join(stateDir, `${fsId}${mountPart(dir, port)}`);
}

/** What efs-utils' state file of a mount says of its tunnel process. */
export interface EfsUtilsTunnelState {
  /** The pid efs-utils recorded (it may have died since, and the pid been reused), or null. */
  pid: number | null;
  /** The command it started the tunnel with. */
  cmd: string[];
  /** The network namespace that command enters (netns=: `nsenter --net=PATH …`), or null for efs-utils' own. */
  netns: string | null;
}

/** The state file's word on the mount's tunnel, or null when it cannot be read as efs-utils writes it. */
export async function efsUtilsTunnelState(stateFile: string): Promise<EfsUtilsTunnelState | null> {
  let state: { pid?: unknown; cmd?: unknown } | null;
  try {
    state = JSON.parse(await readFile(stateFile, 'utf8')) as { pid?: unknown; cmd?: unknown } | null;
  } catch {
    return null; // missing, unreadable, or not JSON
  }
  if (state === null || typeof state !== 'object' || !Array.isArray(state.cmd)) return null;
  const cmd = state.cmd.filter((a): a is string => typeof a === 'string');
  const pid = typeof state.pid === 'number' && Number.isInteger(state.pid) && state.pid > 0 ? state.pid : null;
  const netns = basename(cmd[0] ?? '') === 'nsenter' ? cmd.find((a) => a.startsWith('--net='))?.slice('--net='.length) ?? null : null;
  return { pid, cmd, netns };
}

/** efs-utils' stunnel configs for the mount at `dir` through `port`. */
export async function efsUtilsConfigs(dir: string, port: number, stateDir: string): Promise<{ files: string[]; pattern: string }> {
  const part = mountPart(dir, port);
  const files = configs(await listing(stateDir)).filter((c) => c.mount === part).map((c) => join(stateDir, c.name));
  return { files, pattern: `stunnel-config.FS${part}` };
}

/** An efs-utils mount through a local port, and the file system its config names. */
export interface EfsUtilsMount {
  dir: string;
  port: number;
  fs_id: string;
  file: string;
}

/**
 * The efs-utils mounts among `mounts` (each a directory mounted through a local port): those with configs of one
 * file system. A mount with none is not efs-utils'; one with configs of two file systems is left out, since whose
 * it is cannot be told.
 */
export async function efsUtilsMounts(mounts: readonly { dir: string; port: number }[], stateDir: string): Promise<EfsUtilsMount[]> {
  if (mounts.length === 0) return [];
  const all = configs(await listing(stateDir));
  const out: EfsUtilsMount[] = [];
  for (const { dir, port } of mounts) {
    const part = mountPart(dir, port);
    const [first, ...rest] = all.filter((c) => c.mount === part);
    if (first === undefined || rest.some((c) => c.fsId !== first.fsId)) continue;
    out.push({ dir, port, fs_id: first.fsId, file: join(stateDir, first.name) });
  }
  return out;
}

/** An efs-utils mount whose tunnel efs-utils started inside another network namespace (netns=), from its state file. */
export interface EfsUtilsNamespacedMount extends EfsUtilsTunnelState {
  netns: string;
  /** Its stunnel config. */
  config: string;
  stateFile: string;
}

/** The mount at `dir` through `port`, when efs-utils' files say its tunnel runs inside another network namespace. */
export async function efsUtilsNamespacedMount(dir: string, port: number, stateDir: string): Promise<EfsUtilsNamespacedMount | null> {
  const [m] = await efsUtilsMounts([{ dir, port }], stateDir);
  if (m === undefined) return null;
  const stateFile = efsUtilsStateFile(m.fs_id, dir, port, stateDir);
  const state = await efsUtilsTunnelState(stateFile);
  return state?.netns ? { ...state, netns: state.netns, config: m.file, stateFile } : null;
}
