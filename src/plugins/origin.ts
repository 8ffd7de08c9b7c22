/**
 * Browser origins allowed to open execd's WebSockets. A browser always sends
 * Origin on a WebSocket; other clients send none and are not concerned. A page
 * of execd's own origin (its /docs, a /ui/ it serves) is allowed: its Origin
 * names the host and port the request was sent to (the Host header). Other
 * origins must be listed in EXECD_WS_ORIGINS; `allowed` holds them as
 * URL#origin spells them. (The token is still required: the origin check only
 * keeps other sites' pages from using a token they learned.)
 */
export function originAllowed(origin: string | undefined, allowed: readonly string[], host?: string): boolean {
  if (origin === undefined) return true;
  try {
    const url = new URL(origin);
    if (url.origin === 'null') return false;
    if (host !== undefined && (url.protocol === 'http:' || url.protocol === 'https:') && url.host === normalizeHost(url.protocol, host)) return true;
    return allowed.includes(url.origin);
  } catch {
    return false;
  }
}

/** The Host header as URL#host spells it for this scheme (lower case, default port dropped); '' when it is no host. */
function normalizeHost(protocol: string, host: string): string {
  try {
    return new URL(`${protocol}//${host}`).host;
  } catch {
    return '';
  }
}

/** The 403 detail of a refused Origin, saying how to allow it. */
export function originRefusal(origin: string | undefined): string {
  return `a WebSocket from origin ${JSON.stringify(String(origin).slice(0, 200))} is refused: only execd's own origin and those of EXECD_WS_ORIGINS (comma-separated) may open one`;
}
