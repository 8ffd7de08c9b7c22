import { createHash, timingSafeEqual } from 'node:crypto';

export const SCOPES = ['info', 'processes', 'run', 'jobs:read', 'jobs:write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  /** Token id: logged and used as the owner of jobs; never the token itself. */
  id: string;
  scopes: ReadonlySet<Scope>;
}

interface TokenEntry {
  principal: Principal;
  digest: Buffer;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Bearer tokens, kept only as SHA-256 digests and compared in constant time:
 * every entry is compared, whatever matched, so timing reveals neither which
 * token nor how much of it was right.
 */
export class TokenStore {
  private entries: TokenEntry[] = [];

  constructor(tokens: string[]) {
    this.entries = tokens.map((t, i) => ({
      principal: { id: tokens.length === 1 ? 'env' : `env-${i + 1}`, scopes: new Set(SCOPES) },
      digest: sha256(t),
    }));
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
