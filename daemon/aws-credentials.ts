// The AWS credentials that sign an IAM mount's client certificate, looked
// up as efs-utils does (get_aws_security_credentials): the ECS task's
// credentials URI (awscredsuri=), a named profile (awsprofile=, AWS_PROFILE,
// or [default] when it has keys) in root's ~/.aws/credentials then
// ~/.aws/config (its keys, the role it assumes at AWS STS, or its
// credential_process, as botocore does for efs-utils), the ECS agent's URI
// in the daemon's environment, EKS Pod Identity's agent
// (AWS_CONTAINER_CREDENTIALS_FULL_URI with the token in
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), a web
// identity (rolearn= and jwtpath=, or AWS_ROLE_ARN and
// AWS_WEB_IDENTITY_TOKEN_FILE) exchanged at AWS STS, then the instance's IAM
// role from instance metadata. Looked up again for every new
// certificate, so that rotated keys and refreshed role credentials are used.
// The secret key stays in memory; it is never logged or written.
import { readFile } from 'node:fs/promises';
import type { Config } from './config.js';
import { RelayError } from './errors.js';
import { dnsNameSuffix } from './target.js';
import { ask } from './http-ask.js';
import { signApiRequest } from './sigv4.js';
import { fromCredentialProcess } from './credential-process.js';
import { metadataItem } from './instance-region.js';
import type { MountOptions } from './options.js';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** Temporary credentials' session token (a role's, a task's, or aws_session_token); null for long-term keys. */
  sessionToken: string | null;
  /** When temporary credentials stop working; null when not said. */
  expiration: Date | null;
  /**
   * Where they came from, in efs-utils' form: credentials:PROFILE, config:PROFILE, named_profile:PROFILE (the role
   * the profile assumes, or its credential_process), ecs:URI, podidentity:URI,FILE, webidentity:ARN,FILE,
   * metadata:ROLE.
   */
  source: string;
}

/** Where credentials are looked for (the daemon's config and environment). */
export interface CredentialPlaces {
  credentialsFile: string;
  configFile: string;
  /** The ECS agent, before an awscredsuri= path (efs-utils: http://169.254.170.2). */
  ecsUrl: string;
  /** Instance metadata (efs.metadata_url); "" for none. */
  metadataUrl: string;
  /** The file system's region, in which roles are assumed. */
  region: string;
  /** AWS STS of the file system's region, for web identities and assumed roles (efs-utils: https://sts.REGION.SUFFIX/). */
  stsUrl: string;
  env: Readonly<Record<string, string | undefined>>;
}

/** Where the daemon looks for the credentials of a file system in `region`: its config, and `env` (its environment). */
export function credentialPlaces(cfg: Config, region: string, env: CredentialPlaces['env']): CredentialPlaces {
  return {
    credentialsFile: cfg.iam.credentials_file, configFile: cfg.iam.config_file, ecsUrl: cfg.iam.ecs_url, metadataUrl: cfg.efs.metadata_url,
    region, stsUrl: cfg.iam.sts_url || `https://sts.${region}.${dnsNameSuffix(region, cfg)}/`, env,
  };
}

const noCredentials = (message: string): never => {
  throw new RelayError('NO_AWS_CREDENTIALS', message);
};

type Ini = Map<string, Map<string, string>>;

/** An INI file as botocore reads ~/.aws files: [section], key = value, # and ; comments; null when there is no file. */
async function readIni(file: string): Promise<Ini | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return noCredentials(`Cannot read ${file}: ${(err as Error).message}`);
  }
  const out: Ini = new Map();
  let section: Map<string, string> | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[\s*(.+?)\s*\]$/.exec(line);
    if (head) {
      section = out.get(head[1] as string) ?? new Map();
      out.set(head[1] as string, section);
      continue;
    }
    const eq = line.indexOf('=');
    // An indented line continues a nested value (s3 = …): not a key of the profile.
    if (section && eq > 0 && !/^\s/.test(raw)) section.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  return out;
}

/** A profile's section: [NAME] in the credentials file; [profile NAME] (or [NAME], as efs-utils reads it) in the config file. */
function profileIn(ini: Ini | null, profile: string, isConfig: boolean): Map<string, string> | undefined {
  return (isConfig ? ini?.get(`profile ${profile}`) : undefined) ?? ini?.get(profile);
}

/** The keys in a profile's section of one of the two files (`source`: credentials:NAME or config:NAME), or null when it has none. */
function keysIn(s: Map<string, string> | undefined, source: string): AwsCredentials | null {
  const id = s?.get('aws_access_key_id');
  const secret = s?.get('aws_secret_access_key');
  if (!id || !secret) return null;
  return { accessKeyId: id, secretAccessKey: secret, sessionToken: s?.get('aws_session_token') || null, expiration: null, source };
}

/** How deep profiles may chain roles (source_profile of a source_profile …), as a guard against a loop. */
const MAX_ROLE_CHAIN = 4;

/** A role's temporary credentials from AWS STS's AssumeRole, signed with `base`; the credentials, or why there are none. */
async function assumeRole(places: CredentialPlaces, profile: string, settings: Map<string, string>, base: AwsCredentials): Promise<AwsCredentials | string> {
  const roleArn = settings.get('role_arn') as string;
  const form = new URLSearchParams({
    Action: 'AssumeRole', Version: '2011-06-15', RoleArn: roleArn,
    // botocore's name for the session, which is what efs-utils' mounts showed in CloudTrail.
    RoleSessionName: settings.get('role_session_name') || `botocore-session-${Math.floor(Date.now() / 1000)}`,
  });
  const externalId = settings.get('external_id');
  if (externalId) form.set('ExternalId', externalId);
  const duration = settings.get('duration_seconds');
  if (duration) form.set('DurationSeconds', duration);
  const at = places.stsUrl;
  const body = form.toString();
  let r;
  try {
    const signed = signApiRequest({ method: 'POST', url: new URL(at), body, contentType: 'application/x-www-form-urlencoded', region: places.region, service: 'sts', date: new Date() }, base);
    const { host: _host, ...headers } = signed; // Node sends Host itself, the same value
    r = await ask(at, 'POST', { ...headers, Accept: 'application/json' }, STS_TIMEOUT_MS, Buffer.from(body));
  } catch (err) {
    return `Unable to reach ${at} to assume role ${roleArn} of profile [${profile}] (${(err as Error).message})`;
  }
  if (r.status !== 200) return `AWS STS at ${at} did not let ${base.source} assume role ${roleArn} of profile [${profile}] (HTTP ${r.status}${stsReason(r.body)})`;
  return stsCredentials(r.body, 'AssumeRole', `named_profile:${profile}`)
    ?? `AWS STS at ${at} answered no AccessKeyId, SecretAccessKey and SessionToken for role ${roleArn} of profile [${profile}]`;
}

/**
 * The credentials a profile whose settings name a role (role_arn) assumes, as botocore does for efs-utils: signed
 * with those of its source_profile (keys, or a role of its own) or its credential_source; or why there are none.
 */
async function fromRoleProfile(places: CredentialPlaces, profile: string, settings: Map<string, string>, via: string[]): Promise<AwsCredentials | string> {
  if (via.includes(profile) || via.length >= MAX_ROLE_CHAIN) return `the profiles ${[...via, profile].join(' → ')} chain roles in a loop or deeper than ${MAX_ROLE_CHAIN}`;
  if (settings.has('mfa_serial')) return `profile [${profile}] asks for an MFA code (mfa_serial), which a daemon cannot give`;
  const sourceProfile = settings.get('source_profile');
  const credentialSource = settings.get('credential_source');
  let base: AwsCredentials | string | null;
  if (sourceProfile) {
    base = await fromProfile(places, sourceProfile, [...via, profile]);
    if (base === null) base = `its source_profile [${sourceProfile}] has no aws_access_key_id and aws_secret_access_key in ${places.credentialsFile} or ${places.configFile}, nor a role_arn`;
  } else if (credentialSource === 'Ec2InstanceMetadata') {
    base = await fromInstanceRole(places.metadataUrl);
  } else if (credentialSource === 'EcsContainer') {
    const relative = places.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
    base = relative ? await fromEcs(places, relative) : 'credential_source EcsContainer, but no AWS_CONTAINER_CREDENTIALS_RELATIVE_URI in efs-relayd\'s environment';
  } else if (credentialSource === 'Environment') {
    const [id, secret] = [places.env.AWS_ACCESS_KEY_ID, places.env.AWS_SECRET_ACCESS_KEY];
    base = id && secret ? { accessKeyId: id, secretAccessKey: secret, sessionToken: places.env.AWS_SESSION_TOKEN || null, expiration: null, source: 'environment' }
      : 'credential_source Environment, but no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in efs-relayd\'s environment';
  } else {
    base = credentialSource ? `credential_source ${credentialSource} is not one of Ec2InstanceMetadata, EcsContainer and Environment` : 'it names neither source_profile nor credential_source';
  }
  if (typeof base === 'string') return `profile [${profile}] assumes role ${settings.get('role_arn') ?? ''}, but ${base}`;
  return assumeRole(places, profile, settings, base);
}

/**
 * A named profile's credentials: its keys in the credentials file, then the config file; else the role it assumes
 * (role_arn); else what its credential_process prints. Null when it has none of them; why, when the role or the
 * process gives nothing.
 */
async function fromProfile(places: CredentialPlaces, profile: string, via: string[] = []): Promise<AwsCredentials | string | null> {
  // Each file read once; the config file only when the credentials file has no keys for the profile.
  const inCredentials = profileIn(await readIni(places.credentialsFile), profile, false);
  const fromCredentials = keysIn(inCredentials, `credentials:${profile}`);
  if (fromCredentials) return fromCredentials;
  const inConfig = profileIn(await readIni(places.configFile), profile, true);
  const fromConfig = keysIn(inConfig, `config:${profile}`);
  if (fromConfig) return fromConfig;
  // botocore takes a profile's other settings from either file, the config file's first: a role, then a process.
  for (const settings of [inConfig, inCredentials]) {
    if (settings?.get('role_arn')) return fromRoleProfile(places, profile, settings, via);
  }
  for (const [settings, file] of [[inConfig, places.configFile], [inCredentials, places.credentialsFile]] as const) {
    const command = settings?.get('credential_process');
    if (command) return fromCredentialProcess(profile, command, file);
  }
  return null;
}

/** The named profile efs-utils uses, and what named it: awsprofile=, else AWS_PROFILE, else "default" when either file gives it a key ID. */
async function profileFor(opts: MountOptions, places: CredentialPlaces): Promise<{ name: string; by: string } | null> {
  if (opts.awsprofile) return { name: opts.awsprofile, by: 'awsprofile=' };
  if (places.env.AWS_PROFILE) return { name: places.env.AWS_PROFILE, by: 'AWS_PROFILE in efs-relayd\'s environment' };
  for (const [file, isConfig] of [[places.credentialsFile, false], [places.configFile, true]] as const) {
    if (profileIn(await readIni(file), 'default', isConfig)?.get('aws_access_key_id')) return { name: 'default', by: `its aws_access_key_id in ${file}` };
  }
  return null;
}

/** An answer's JSON object, or undefined when it is not one. */
function jsonObject(body: string): Record<string, unknown> | undefined {
  try {
    const j: unknown = JSON.parse(body);
    return typeof j === 'object' && j !== null ? (j as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Temporary credentials as AWS answers them: AccessKeyId, SecretAccessKey, the session token under `tokenKey`
 * (ECS and instance metadata: Token; STS: SessionToken) and Expiration (text; STS's JSON gives seconds since the
 * epoch); null when one of the first three is missing.
 */
function temporaryCredentials(c: Record<string, unknown> | undefined, tokenKey: 'Token' | 'SessionToken', source: string): AwsCredentials | null {
  const str = (k: string): string | null => (typeof c?.[k] === 'string' && c[k] !== '' ? (c[k] as string) : null);
  const [id, secret, token] = [str('AccessKeyId'), str('SecretAccessKey'), str(tokenKey)];
  if (id === null || secret === null || token === null) return null;
  const exp = c?.Expiration;
  const expiration = typeof exp === 'number' ? new Date(exp * 1000) : typeof exp === 'string' && !Number.isNaN(Date.parse(exp)) ? new Date(exp) : null;
  return { accessKeyId: id, secretAccessKey: secret, sessionToken: token, expiration, source };
}

/** The ECS agent answers on the task's own network: as instance metadata, a second is plenty. */
const ECS_TIMEOUT_MS = 1_000;

/** The ECS agent's credentials at ecsUrl + uri; the credentials, or why there are none. */
async function fromEcs(places: CredentialPlaces, uri: string): Promise<AwsCredentials | string> {
  const url = places.ecsUrl + uri;
  try {
    const r = await ask(url, 'GET', {}, ECS_TIMEOUT_MS);
    if (r.status !== 200) return `Unsuccessful retrieval of AWS security credentials at ${url} (HTTP ${r.status})`;
    return temporaryCredentials(jsonObject(r.body), 'Token', `ecs:${uri}`) ?? `Unsuccessful retrieval of AWS security credentials at ${url} (no AccessKeyId, SecretAccessKey and Token in its answer)`;
  } catch (err) {
    return `Unable to reach ${url} to retrieve AWS security credentials (${(err as Error).message})`;
  }
}

/**
 * EKS Pod Identity: its agent's credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI), asked with the token the pod was
 * given (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, read again each time: kubelet rotates it) as Authorization; the
 * credentials, or why there are none.
 */
async function fromPodIdentity(uri: string, tokenFile: string): Promise<AwsCredentials | string> {
  let token: string;
  try {
    token = (await readFile(tokenFile, 'utf8')).trim();
  } catch (err) {
    return `Error reading the AWS container authorization token file ${tokenFile}: ${(err as Error).message}`;
  }
  // A header of its own: a line break would start another.
  if (token === '' || /[\r\n]/.test(token)) return `The AWS container authorization token in ${tokenFile} is empty or has a line break`;
  let r;
  try {
    r = await ask(uri, 'GET', { Authorization: token }, ECS_TIMEOUT_MS);
  } catch (err) {
    return `Unable to reach Container Credentials URI at ${uri} (${(err as Error).message})`;
  }
  if (r.status !== 200) return `Unsuccessful retrieval of AWS security credentials from Container Credentials URI at ${uri} (HTTP ${r.status})`;
  return temporaryCredentials(jsonObject(r.body), 'Token', `podidentity:${uri},${tokenFile}`)
    ?? `Unsuccessful retrieval of AWS security credentials from Container Credentials URI at ${uri} (no AccessKeyId, SecretAccessKey and Token in its answer)`;
}

/** STS's reason in a refusal, {"Error": {"Code": "InvalidIdentityToken", "Message": "…"}}, as ": Code (Message)"; '' when it gave none. */
function stsReason(body: string): string {
  const e = jsonObject(body)?.Error as { Code?: unknown; Message?: unknown } | undefined;
  return typeof e?.Code === 'string' ? `: ${e.Code}${typeof e.Message === 'string' ? ` (${e.Message.slice(0, 200)})` : ''}` : '';
}

/** The temporary credentials in STS's JSON answer to `action` ({ACTIONResponse: {ACTIONResult: {Credentials}}}), or null. */
function stsCredentials(body: string, action: 'AssumeRole' | 'AssumeRoleWithWebIdentity', source: string): AwsCredentials | null {
  const response = jsonObject(body)?.[`${action}Response`] as { [k: string]: { Credentials?: Record<string, unknown> } | undefined } | undefined;
  return temporaryCredentials(response?.[`${action}Result`]?.Credentials, 'SessionToken', source);
}

/** How long AWS STS may take to answer (a request over the internet, unlike the local ECS agent and metadata). */
const STS_TIMEOUT_MS = 10_000;

/**
 * A web identity's token (jwtpath=, AWS_WEB_IDENTITY_TOKEN_FILE) exchanged for the role's credentials at AWS STS
 * (AssumeRoleWithWebIdentity, session efs-mount-helper, as efs-utils names it); the credentials, or why there are none.
 */
async function fromWebIdentity(places: CredentialPlaces, roleArn: string, tokenFile: string): Promise<AwsCredentials | string> {
  let token: string;
  try {
    token = (await readFile(tokenFile, 'utf8')).trim();
  } catch (err) {
    return `Error reading token file ${tokenFile}: ${(err as Error).message}`;
  }
  const query = new URLSearchParams({ Version: '2011-06-15', Action: 'AssumeRoleWithWebIdentity', RoleArn: roleArn, RoleSessionName: 'efs-mount-helper', WebIdentityToken: token });
  const at = places.stsUrl;
  let r;
  try {
    r = await ask(`${at}?${query.toString()}`, 'GET', { Accept: 'application/json' }, STS_TIMEOUT_MS);
  } catch (err) {
    return `Unable to reach ${at} to retrieve AWS security credentials (${(err as Error).message})`;
  }
  if (r.status !== 200) return `Unsuccessful retrieval of AWS security credentials at ${at} (HTTP ${r.status} for role ${roleArn}${stsReason(r.body)})`;
  return stsCredentials(r.body, 'AssumeRoleWithWebIdentity', `webidentity:${roleArn},${tokenFile}`)
    ?? `Unsuccessful retrieval of AWS security credentials at ${at} (no AccessKeyId, SecretAccessKey and SessionToken in its answer)`;
}

/** An IAM role's name (IAM allows letters, digits and +=,.@_-). */
const ROLE = /^[\w+=,.@-]{1,128}$/;

/** The instance's IAM role's credentials from instance metadata; the credentials, or why there are none. */
async function fromInstanceRole(base: string): Promise<AwsCredentials | string> {
  if (base === '') return 'instance metadata is not asked (efs.metadata_url is "")';
  const role = await metadataItem(base, 'iam/security-credentials/', 'IAM role name', ROLE);
  if (role.value === null) return `no IAM role: ${role.why}`;
  const creds = await metadataItem(base, `iam/security-credentials/${role.value}`, 'credentials document', /^\{[\s\S]*\}$/);
  if (creds.value === null) return `no credentials for IAM role ${role.value}: ${creds.why}`;
  return temporaryCredentials(jsonObject(creds.value), 'Token', `metadata:${role.value}`) ?? `no credentials for IAM role ${role.value}: instance metadata's answer has no AccessKeyId, SecretAccessKey and Token`;
}

/** The credentials an IAM mount with these options signs with; NO_AWS_CREDENTIALS saying what was tried when there are none. */
export async function awsCredentials(opts: MountOptions, places: CredentialPlaces): Promise<AwsCredentials> {
  if (opts.awscredsuri) {
    const c = await fromEcs(places, opts.awscredsuri);
    return typeof c === 'string' ? noCredentials(`${c}; awscredsuri= names where the ECS agent keeps the task's credentials`) : c;
  }
  // efs-utils looks no profile up for a mount that names a web identity.
  const webIdentity = opts.rolearn && opts.jwtpath ? { roleArn: opts.rolearn, tokenFile: opts.jwtpath } : null;
  const profile = webIdentity ? null : await profileFor(opts, places);
  if (profile !== null) {
    const c = await fromProfile(places, profile.name);
    if (typeof c === 'string') return noCredentials(`${c} (named by ${profile.by})`);
    if (c) return c;
    return noCredentials(`AWS security credentials not found in ${places.credentialsFile} or ${places.configFile} under named profile [${profile.name}] (named by ${profile.by}); `
      + 'efs-relay reads aws_access_key_id and aws_secret_access_key (and aws_session_token) there, a role_arn to assume with source_profile or credential_source, or a credential_process; it does not use SSO');
  }
  const tried: string[] = webIdentity ? [] : [`no [default] profile with keys in ${places.credentialsFile} or ${places.configFile}`];
  const relative = places.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
  if (relative) {
    const c = await fromEcs(places, relative);
    if (typeof c !== 'string') return c;
    tried.push(c);
  } else {
    tried.push('no AWS_CONTAINER_CREDENTIALS_RELATIVE_URI in efs-relayd\'s environment');
  }
  const [podUri, podToken] = [places.env.AWS_CONTAINER_CREDENTIALS_FULL_URI, places.env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE];
  if (podUri && podToken) {
    const c = await fromPodIdentity(podUri, podToken);
    if (typeof c !== 'string') return c;
    tried.push(`EKS Pod Identity: ${c}`);
  }
  const envIdentity = places.env.AWS_ROLE_ARN && places.env.AWS_WEB_IDENTITY_TOKEN_FILE
    ? { roleArn: places.env.AWS_ROLE_ARN, tokenFile: places.env.AWS_WEB_IDENTITY_TOKEN_FILE } : null;
  for (const [identity, named] of [[webIdentity, 'rolearn= and jwtpath='], [envIdentity, 'AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE']] as const) {
    if (!identity) continue;
    const c = await fromWebIdentity(places, identity.roleArn, identity.tokenFile);
    if (typeof c !== 'string') return c;
    tried.push(`web identity of ${named}: ${c}`);
  }
  const role = await fromInstanceRole(places.metadataUrl);
  if (typeof role !== 'string') return role;
  tried.push(role);
  return noCredentials(`AWS Access Key ID and Secret Access Key are not found in AWS credentials file (${places.credentialsFile}), config file (${places.configFile}), `
    + `from ECS credentials relative uri, or from the instance security credentials service: ${tried.join('; ')}`);
}
