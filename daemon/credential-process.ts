// A profile's credential_process: a program whose output is the profile's
// credentials (botocore's ProcessProvider, which efs-utils reaches through
// botocore). The daemon runs it as root, so it runs only when nobody but
// root could have chosen what runs: the config file that names it and the
// program itself must be root's alone (file-trust.ts), and the program is
// named by absolute path, not looked up in PATH.
import { execFile } from 'node:child_process';
import { isAbsolute } from 'node:path';
import { whoElseCanChangeForDaemon } from './file-trust.js';
import type { AwsCredentials } from './aws-credentials.js';

/** How long the program may take (botocore waits without a limit; a mount should not). */
export const PROCESS_TIMEOUT_MS = 10_000;
/** Its output beyond this is not credentials. */
const OUTPUT_LIMIT = 65_536;

/** Words of a command line as a POSIX shell splits them (botocore: shlex.split): quotes and backslashes, no expansion. */
export function splitCommand(line: string): string[] | null {
  const words: string[] = [];
  // The word being read; null between words ('' is an empty word, as '' on a command line).
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    const next = line[i + 1];
    if (quote === null && /\s/.test(ch)) {
      if (word !== null) words.push(word);
      word = null;
      continue;
    }
    word ??= '';
    if (quote === "'") {
      if (ch === "'") quote = null;
      else word += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = null;
      else if (ch === '\\' && next !== undefined && '"\\$`'.includes(next)) word += line[++i];
      else word += ch;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === '\\' && next !== undefined) word += line[++i];
    else word += ch;
  }
  if (quote !== null) return null;
  if (word !== null) words.push(word);
  return words;
}

/**
 * The credentials `profile`'s credential_process gives (its JSON, Version 1), or why there are none. `configFile`
 * names it: it and the program must be changeable by root alone.
 */
export async function fromCredentialProcess(profile: string, commandLine: string, configFile: string): Promise<AwsCredentials | string> {
  const what = `credential_process of profile [${profile}]`;
  const argv = splitCommand(commandLine);
  if (argv === null || argv.length === 0) return `${what} is not a command line (an unclosed quote, or nothing)`;
  const program = argv[0] as string;
  if (!isAbsolute(program)) return `${what} names its program as "${program}": efs-relayd runs it as root, so it must be an absolute path`;
  for (const file of [configFile, program]) {
    const why = await whoElseCanChangeForDaemon(file);
    if (why !== null) return `${what} is not run, since efs-relayd would run it as root: ${why}`;
  }
  let out: string;
  try {
    out = await new Promise<string>((resolve, reject) => {
      execFile(program, argv.slice(1), { timeout: PROCESS_TIMEOUT_MS, maxBuffer: OUTPUT_LIMIT, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message.split('\n')[0] as string}${stderr.trim() ? `: ${stderr.trim().slice(0, 300)}` : ''}`));
        else resolve(stdout);
      });
    });
  } catch (err) {
    return `${what} failed: ${(err as Error).message}`;
  }
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(out) as Record<string, unknown>;
  } catch {
    return `${what} did not print JSON`;
  }
  if (j?.Version !== 1) return `${what} printed Version ${JSON.stringify(j?.Version)}, not 1`;
  const str = (k: string): string | null => (typeof j[k] === 'string' && j[k] !== '' ? (j[k] as string) : null);
  const [id, secret] = [str('AccessKeyId'), str('SecretAccessKey')];
  if (id === null || secret === null) return `${what} printed no AccessKeyId and SecretAccessKey`;
  const exp = str('Expiration');
  const expiration = exp !== null && !Number.isNaN(Date.parse(exp)) ? new Date(exp) : null;
  return { accessKeyId: id, secretAccessKey: secret, sessionToken: str('SessionToken'), expiration, source: `named_profile:${profile}` };
}
