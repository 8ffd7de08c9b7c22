import { hash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { ConfigError } from '../config.js';
import { SCOPES, type Scope } from '../schemas/constants.js';

export { SCOPES, type Scope } from '../schemas/constants.js';

export interface Principal {
  /** Token id: logged and used as the owner of jobs; never the token itself. */
  id: string;
  scopes: ReadonlySet<Scope>;
}

/** `admin` holds every scope. */
export const hasScope = (principal: Principal, scope: Scope): boolean => principal.scopes.has(scope) || principal.scopes.has('admin');

/**
 * Whether `principal` may see a job owned by the token id `ownerId`: its own
 * jobs, or any job with `admin`. A job without an owner is visible to admins only.
 * The jobs code answers 404 (never 403) when this is false, so ids do not leak.
 */
export const canSee = (principal: Principal, ownerId: string | null | undefined): boolean =>
  (ownerId !== null && ownerId !== undefined && principal.id === ownerId) || principal.scopes.has('admin');

/** The owner filter of job lists for `principal`, as canSee: undefined (every job) with admin, else its own id. */
export const ownerFilter = (principal: Principal): string | undefined => (principal.scopes.has('admin') ? undefined : principal.id);

interface TokenEntry {
  principal: Principal;
  digest: Buffer;
}

/** One-shot crypto.hash: no Hash object per call (authenticate hashes the token of every request). */
const sha256 = (s: string): Buffer => hash('sha256', s, 'buffer');

const TOKEN_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$/;

/** One entry of EXECD_TOKENS_FILE. */
const TokenFileEntry = z
  .strictObject({
    id: z.string().regex(TOKEN_ID, 'ids are 1-64 of A-Z a-z 0-9 . _ : @ - (starting with a letter or digit)'),
    token: z.string().min(16, 'tokens must be at least 16 characters').max(4096).regex(/^[\x21-\x7e]+$/, 'tokens are printable ASCII without spaces').optional(),
    sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'sha256 is the hex SHA-256 of the token (64 hex digits)').optional(),
    scopes: z.array(z.enum(SCOPES)).min(1),
  })
  .refine((e) => (e.token === undefined) !== (e.sha256 === undefined), { message: 'give exactly one of "token" and "sha256"' });

/** A list of entries, or `{tokens: [...]}`. */
const TokenFile = z.array(TokenFileEntry);
const unwrapTokens = (data: unknown): unknown =>
  data !== null && typeof data === 'object' && !Array.isArray(data) && Object.keys(data).length === 1 && 'tokens' in data ? data.tokens : data;

/** The YAML parser, loaded with the first settings file: a server without one never needs it (~1 MiB of heap). */
let yaml: typeof import('yaml') | null = null;
const loadYaml = (): typeof import('yaml') => (yaml ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));

/** Parse a JSON or YAML settings file (YAML 1.2 reads JSON too); duplicate keys are an error. */
export function readSettingsFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${what} ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    return loadYaml().parse(text, { uniqueKeys: true, prettyErrors: false });
  } catch (err) {
    // YAML's message quotes the offending line, which may hold a token: name the position only.
    const pos = (err as { linePos?: Array<{ line: number; col: number }> }).linePos?.[0];
    throw new ConfigError(`${what} ${path}: not valid JSON or YAML${pos ? ` (line ${pos.line}, column ${pos.col})` : ''}`);
  }
}

/** A zod failure as one line that names the path but never echoes the value (it may be a token). */
export function describeIssue(error: z.ZodError, prefix: string[] = []): string {
  const issue = error.issues[0]!;
  const path = [...prefix, ...issue.path.map(String)];
  const where = path.length ? path.join('.') : '(top level)';
  return `${where}: ${issue.message}`;
}

export interface TokenFileResult {
  entries: TokenEntry[];
  warnings: string[];
}

/** Read EXECD_TOKENS_FILE; throws ConfigError naming the file and the bad entry, never the token. */
export function loadTokensFile(path: string, reservedIds: ReadonlySet<string>): TokenFileResult {
  const data = readSettingsFile(path, 'EXECD_TOKENS_FILE');
  const list = unwrapTokens(data);
  const parsed = TokenFile.safeParse(list);
  if (!parsed.success) throw new ConfigError(`EXECD_TOKENS_FILE ${path}: ${describeIssue(parsed.error, list === data ? [] : ['tokens'])}`);
  const entries: TokenEntry[] = [];
  const seen = new Set<string>();
  const digests = new Set<string>();
  for (const e of parsed.data) {
    if (reservedIds.has(e.id)) throw new ConfigError(`EXECD_TOKENS_FILE ${path}: id "${e.id}" is reserved for the tokens of EXECD_TOKEN`);
    if (seen.has(e.id)) throw new ConfigError(`EXECD_TOKENS_FILE ${path}: id "${e.id}" appears twice`);
    seen.add(e.id);
    const digest = e.token !== undefined ? sha256(e.token) : Buffer.from(e.sha256!, 'hex');
    if (digests.has(digest.toString('hex'))) throw new ConfigError(`EXECD_TOKENS_FILE ${path}: entry "${e.id}" has the same token as another entry`);
    digests.add(digest.toString('hex'));
    entries.push({ principal: { id: e.id, scopes: new Set(e.scopes) }, digest });
  }
  const warnings: string[] = [];
  if (parsed.data.some((e) => e.token !== undefined)) {
    try {
      if ((statSync(path).mode & 0o077) !== 0) warnings.push(`EXECD_TOKENS_FILE ${path} holds plain tokens and is readable by group or others: chmod 600 it, or store sha256 digests`);
    } catch {
      // read above; a race here only loses the warning
    }
  }
  return { entries, warnings };
}

/**
 * Bearer tokens, kept only as SHA-256 digests and compared in constant time:
 * every entry is compared, whatever matched, so timing reveals neither which
 * token nor how much of it was right.
 *
 * Tokens of EXECD_TOKEN hold every scope (ids `env`, or `env-1`, `env-2`…);
 * EXECD_TOKENS_FILE adds scoped ones and is re-read by `reload()` (SIGHUP).
 */
export class TokenStore {
  private readonly envEntries: TokenEntry[];
  private entries: TokenEntry[];
  /** The digest of every principal handed out, so a holder (an open WebSocket) can ask whether its token is still in force. */
  private readonly digests = new WeakMap<Principal, Buffer>();
  /** Warnings of the last file read (e.g. a world-readable file of plain tokens). */
  warnings: string[] = [];

  constructor(
    tokens: string[],
    private readonly file?: string,
  ) {
    this.envEntries = tokens.map((t, i) => ({
      principal: { id: tokens.length === 1 ? 'env' : `env-${i + 1}`, scopes: new Set(SCOPES) },
      digest: sha256(t),
    }));
    this.entries = this.envEntries;
    for (const e of this.envEntries) this.digests.set(e.principal, e.digest);
    if (file !== undefined) this.reload();
  }

  /**
   * Re-read the tokens file. On an error the tokens in force stay as they were
   * and the ConfigError is thrown for the caller to log. Returns the warnings.
   */
  reload(): { tokens: number; warnings: string[] } {
    if (this.file === undefined) return { tokens: this.entries.length, warnings: [] };
    const reserved = new Set(['env', ...this.envEntries.map((e) => e.principal.id)]);
    const { entries, warnings } = loadTokensFile(this.file, reserved);
    for (const e of entries) this.digests.set(e.principal, e.digest);
    this.entries = [...this.envEntries, ...entries];
    this.warnings = warnings;
    return { tokens: this.entries.length, warnings };
  }

  get size(): number {
    return this.entries.length;
  }

  /**
   * What a principal authenticated earlier holds now: the entry in force with the same token and id (its
   * scopes as the last reload gave them), or null when the token was removed (or given another id).
   */
  current(principal: Principal): Principal | null {
    const digest = this.digests.get(principal);
    if (digest === undefined) return null;
    for (const e of this.entries) if (e.principal.id === principal.id && e.digest.equals(digest)) return e.principal;
    return null;
  }

  authenticate(token: string): Principal | null {
    const digest = sha256(token);
    let found: Principal | null = null;
    for (const e of this.entries) {
      if (timingSafeEqual(digest, e.digest) && found === null) found = e.principal;
    }
    return found;
  }
}

/** The token of an `Authorization: Bearer …` header, or of a `bearer.<token>` WebSocket subprotocol. */
export function bearerToken(authorization: string | undefined, protocols?: string | undefined): string | null {
  if (authorization) {
    const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(authorization);
    return m ? m[1]! : null;
  }
  if (protocols) {
    for (const p of protocols.split(',')) {
      const t = p.trim();
      if (t.startsWith('bearer.') && t.length > 7) return t.slice(7);
    }
  }
  return null;
}
