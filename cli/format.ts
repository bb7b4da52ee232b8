// Human output for efsctl: tables and detail blocks. --json bypasses this.
import type { TunnelDetail, TunnelView } from '../daemon/tunnels.js';

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

export function tunnelTable(tunnels: TunnelView[]): string {
  if (tunnels.length === 0) return 'No tunnels. Start one with `efsctl add FS_ID`.';
  return table(
    ['FS_ID', 'PORT', 'TARGET', 'STATE', 'MOUNTS', 'CONNS', 'UP', 'DOWN', 'LAST_ERROR'],
    tunnels.map((t) => [
      t.fs_id,
      String(t.port),
      `${t.target.address}:${t.target.port}`,
      t.state,
      String(t.mounts.length),
      String(t.connections.active),
      bytes(t.bytes.upstream),
      bytes(t.bytes.downstream),
      t.last_error ? t.last_error.code : '-',
    ]),
  );
}

export function tunnelDetail(t: TunnelDetail): string {
  const failures = Object.entries(t.handshake_failures).map(([c, n]) => `${c}=${n}`).join(', ') || 'none';
  const lines = [
    `File system:   ${t.fs_id}`,
    `State:         ${t.state}`,
    `Local port:    127.0.0.1:${t.port}`,
    `Target:        ${t.target.address}:${t.target.port} (certificate must name ${t.target.dns_name})`,
    `Region:        ${t.target.region}`,
    `Source:        ${t.source}, created ${t.created}`,
    `Options:       ${Object.entries(t.options).map(([k, v]) => (v === null ? k : `${k}=${v}`)).join(',') || '-'}`,
    `Mounts:        ${t.mounts.join(', ') || '-'}`,
    `Connections:   ${t.connections.active} active, ${t.connections.ok} ok, ${t.connections.failed} failed`,
    `Bytes:         ${bytes(t.bytes.upstream)} up, ${bytes(t.bytes.downstream)} down`,
    `Last connect:  ${t.last_connected_at ?? 'never'}`,
    `Refusals:      ${failures}`,
    `Last error:    ${t.last_error ? `${t.last_error.code} at ${t.last_error.at}: ${t.last_error.message}` : '-'}`,
    'History:',
    ...(t.history.length
      ? t.history.map((h) => `  ${h.at}  ${h.event}${h.code ? `  ${h.code}` : ''}${h.message ? `  ${h.message}` : ''}`)
      : ['  (none)']),
  ];
  return lines.join('\n');
}
