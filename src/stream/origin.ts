/**
 * Browser origins allowed to open execd's WebSockets (EXECD_WS_ORIGINS). A
 * browser always sends Origin on a WebSocket; other clients send none and are
 * not concerned. `allowed` holds origins as URL#origin spells them.
 */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  if (allowed.length === 0) return false;
  try {
    const normalized = new URL(origin).origin;
    return normalized !== 'null' && allowed.includes(normalized);
  } catch {
    return false;
  }
}
