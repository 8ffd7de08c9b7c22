import { createHmac } from 'node:crypto';

/** What a token's secret is derived from, besides EXECD_NOTIFY_SECRET: versioned, so the scheme can change. */
const SECRET_CONTEXT = 'execd-notify-v1:';

/**
 * The signing secret of a token: hex HMAC-SHA256 keyed with EXECD_NOTIFY_SECRET over `execd-notify-v1:<token id>`.
 * Receivers use these 64 hex characters (as ASCII bytes) as their HMAC key; `GET /v1/notify/secret` tells a token
 * its own, and an operator computes it with openssl (docs/notify.md). Rotating EXECD_NOTIFY_SECRET rotates them all.
 */
export function tokenSecret(serverSecret: string, tokenId: string): string {
  return createHmac('sha256', serverSecret).update(SECRET_CONTEXT + tokenId).digest('hex');
}

/** `X-Execd-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">`, as Stripe's webhooks do. */
export function signature(secret: string, timestamp: number, body: string | Buffer): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}
