import type { NotifyAllowEntry } from '../config.js';

/** A callback URL the allowlist admits: where to connect, and whether internal addresses may be used. */
export interface AllowedTarget {
  url: URL;
  /** As URL.hostname gives it: lower case, an IPv6 literal in brackets. */
  host: string;
  port: number;
  /** The host is listed by name (not only through a `*.suffix` entry): loopback, link-local and private addresses are allowed. */
  listed: boolean;
}

export type AllowVerdict = { ok: true; target: AllowedTarget } | { ok: false; reason: string };

const defaultPort = (url: URL): number => (url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80);

/**
 * Whether EXECD_NOTIFY_ALLOW admits `raw`: an https URL (http only through an entry written with http://) whose host
 * is an entry, or ends with a `*.suffix` entry's suffix, and whose port is the entry's (any, when the entry has none).
 * The reason of a refusal names the setting, for the 403 at submit and the Job's lastError.
 */
export function checkNotifyUrl(raw: string, allow: readonly NotifyAllowEntry[]): AllowVerdict {
  if (allow.length === 0) {
    return { ok: false, reason: 'completion callbacks are off on this server: EXECD_NOTIFY_ALLOW is empty (docs/notify.md)' };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'notify.url is not a URL' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { ok: false, reason: 'notify.url must be https:// (or http://)' };
  const host = url.hostname;
  const port = defaultPort(url);
  const matching = allow.filter(
    (e) => (e.wildcard ? host.endsWith(e.host) && host.length > e.host.length : host === e.host) && (e.port === null || e.port === port),
  );
  if (matching.length === 0) {
    return { ok: false, reason: `notify.url host "${host}" (port ${port}) is not allowed by EXECD_NOTIFY_ALLOW` };
  }
  const usable = url.protocol === 'https:' ? matching : matching.filter((e) => e.http);
  if (usable.length === 0) {
    return { ok: false, reason: `notify.url: http:// to "${host}" needs an EXECD_NOTIFY_ALLOW entry written with http:// (https:// is allowed)` };
  }
  return { ok: true, target: { url, host, port, listed: usable.some((e) => !e.wildcard) } };
}
