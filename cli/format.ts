// Human output for efsctl: tables and detail blocks. --json bypasses this.
import type { UnencryptedMount } from '../daemon/proc-mounts.js';
import type { TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import { ERRORS, isErrorCode } from '../daemon/errors.js';
import { joinHost } from '../daemon/target.js';
import { portsOf } from '../daemon/state.js';
import { latestHandshake, problems } from '../daemon/health.js';

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/**
 * One word for a tunnel's health: the code of what is wrong first; else ok
 * once a handshake was verified, pending before the first probe, off while
 * probes are off and no client has connected.
 */
export function healthWord(t: TunnelView): string {
  const problem = problems(t)[0];
  if (problem) return problem.code;
  if (latestHandshake(t.health)) return 'ok';
  return t.health.probing ? 'pending' : 'off';
}

function unencryptedWarning(mounts: UnencryptedMount[]): string[] {
  return mounts.map((m) => `WARNING: ${m.device} is mounted at ${m.dir} WITHOUT TLS (not through a tunnel) [UNENCRYPTED_MOUNT]`);
}

export function tunnelTable(tunnels: TunnelView[], unencrypted: UnencryptedMount[] = []): string {
  const warn = unencryptedWarning(unencrypted);
  if (tunnels.length === 0) return [...warn, 'No tunnels. Start one with `efsctl add FS_ID`.'].join('\n');
  return [...warn, table(
    ['FS_ID', 'PORT', 'TARGET', 'STATE', 'HEALTH', 'MOUNTS', 'CONNS', 'UP', 'DOWN', 'LAST_ERROR'],
    tunnels.map((t) => [
      t.fs_id,
      portsOf(t).join(','), // a daemon older than extra ports sends none
      joinHost(t.target.address, t.target.port),
      t.state,
      healthWord(t),
      String(t.mounts.length),
      String(t.connections.active),
      bytes(t.bytes.upstream),
      bytes(t.bytes.downstream),
      t.last_error ? t.last_error.code : '-',
    ]),
  )].join('\n');
}

function probeLine(t: TunnelView): string {
  const p = t.health.probe;
  if (!p) return t.health.probing ? 'none yet' : 'off (health.probe_interval is 0)';
  const took = `${Math.round(p.duration_seconds * 1000)} ms`;
  return p.ok ? `ok at ${p.at} (${took})` : `failed at ${p.at} (${took}): ${p.code}: ${p.message}`;
}

export function tunnelDetail(t: TunnelDetail): string {
  const byCode = (counts: Partial<Record<string, number>>): string => Object.entries(counts).map(([c, n]) => `${c}=${n}`).join(', ') || 'none';
  const lines = [
    `File system:   ${t.fs_id}`,
    `State:         ${t.state}`,
    `Local port:    127.0.0.1:${t.port}${t.netns ? ` in network namespace ${t.netns} (netns=), where it also connects from` : ''}`,
    ...(t.extra_ports?.length ? [`Extra ports:   ${t.extra_ports.join(', ')} (for mounts made before that name them; each goes once no mount does)`] : []),
    `Target:        ${joinHost(t.target.address, t.target.port)} (certificate must name ${t.target.cert_name})`,
    ...(t.dns === undefined ? [] : [t.dns?.mount_target !== undefined
      ? `Mount target:  ${t.dns.addresses.join(', ')}, ${t.dns.mount_target}, from the EFS API at ${t.dns.answered_at} (DNS has no address for ${t.target.address})`
      : `DNS answer:    ${t.dns ? `${t.dns.addresses.join(', ')} at ${t.dns.answered_at}` : 'none'}`]),
    `Region:        ${t.target.region}`,
    `Revocation:    ${t.ocsp ? 'asked of the OCSP responders of the certificate and its CA (ocsp)' : 'not asked (noocsp)'}`,
    `Source:        ${t.source}, created ${t.created}`,
    `Options:       ${Object.entries(t.options).map(([k, v]) => (v === null ? k : `${k}=${v}`)).join(',') || '-'}`,
    `Mounts:        ${t.mounts.join(', ') || '-'}`,
    `Connections:   ${t.connections.active} active, ${t.connections.ok} ok, ${t.connections.failed} failed`,
    `Bytes:         ${bytes(t.bytes.upstream)} up, ${bytes(t.bytes.downstream)} down`,
    `Last connect:  ${t.last_connected_at ?? 'never'}`,
    `Refusals:      ${byCode(t.handshake_failures)}`,
    `Broken TLS:    ${byCode(t.session_failures)}`,
    `Last error:    ${t.last_error ? `${t.last_error.code} at ${t.last_error.at}: ${t.last_error.message}` : '-'}`,
    // A daemon newer than this efsctl may send a code it does not know: then the line is left out.
    ...(isErrorCode(t.last_error?.code) ? [`What to do:    ${ERRORS[t.last_error.code].hint}`] : []),
    `Health:        ${healthWord(t)}`,
    `Last probe:    ${probeLine(t)}`,
    `Certificate:   ${t.health.probe?.cert_expiry ? `expires ${t.health.probe.cert_expiry}` : 'not seen yet'}`,
    ...t.health.mounts_failing.map((m) => `Mount problem: ${m.dir}: ${m.code}: ${m.message}`),
    `Restarts:      ${t.restarts}`,
    ...unencryptedWarning(t.unencrypted_mounts),
    'History:',
    ...(t.history.length
      ? t.history.map((h) => `  ${h.at}  ${h.event}${h.dir ? `  ${h.dir}` : ''}${h.code ? `  ${h.code}` : ''}${h.message ? `  ${h.message}` : ''}`)
      : ['  (none)']),
  ];
  return lines.join('\n');
}
