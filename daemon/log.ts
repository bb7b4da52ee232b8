// One line per event on stderr:
//   2026-11-27T01:02:03.456Z warn tunnel.handshake_failed fs=fs-12345678 code=TLS_CERT_EXPIRED msg="…" port=20049
// Under systemd (JOURNAL_STREAM set) each line starts with the sd-daemon
// "<N>" priority so journald records the level.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SYSLOG: Record<Level, number> = { debug: 7, info: 6, warn: 4, error: 3 };

export interface LogFields {
  fs?: string | undefined;
  code?: string | undefined;
  msg?: string | undefined;
  [key: string]: string | number | boolean | undefined;
}

export interface Logger {
  log(level: Level, event: string, fields?: LogFields): void;
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /** From now on, log only lines of this level and above (a config reload). */
  setLevel(level: Level): void;
}

function quote(v: string | number | boolean): string {
  const s = String(v);
  return /^[^\s"=]+$/.test(s) ? s : JSON.stringify(s);
}

export function formatLine(level: Level, event: string, fields: LogFields, now: Date, journal: boolean): string {
  const { fs, code, msg, ...rest } = fields;
  let line = `${journal ? `<${SYSLOG[level]}>` : ''}${now.toISOString()} ${level} ${event} fs=${fs ?? '-'} code=${code ?? '-'}`;
  if (msg !== undefined) line += ` msg=${quote(msg)}`;
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) line += ` ${k}=${quote(v)}`;
  return line;
}

export function createLogger(
  minLevel: Level = 'info',
  write: (line: string) => void = (line) => process.stderr.write(line + '\n'),
  journal = Boolean(process.env.JOURNAL_STREAM),
): Logger {
  const log = (level: Level, event: string, fields: LogFields = {}): void => {
    if (RANK[level] < RANK[minLevel]) return;
    write(formatLine(level, event, fields, new Date(), journal));
  };
  return {
    log,
    setLevel: (level) => {
      minLevel = level;
    },
    debug: (e, f) => log('debug', e, f),
    info: (e, f) => log('info', e, f),
    warn: (e, f) => log('warn', e, f),
    error: (e, f) => log('error', e, f),
  };
}
