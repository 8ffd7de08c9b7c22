import { lookup as dnsLookup } from 'node:dns/promises';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { isIP, type LookupFunction } from 'node:net';
import { classifyAddress } from './address.js';
import type { AllowedTarget } from './allow.js';

/**
 * node:http through require, not an ES import: the ES module of node:http reads all its exports, and its lazy
 * WebSocket, CloseEvent and MessageEvent getters then load undici (Node 22): ~3 MiB of RSS at rest for a class
 * execd never uses (docs/benchmarks.md).
 */
const load = createRequire(import.meta.url);
const { request: httpRequest } = load('node:http') as typeof import('node:http');
/** node:https (and with it node:tls, ~2 MiB of RSS) on the first https:// delivery: most servers never make one. */
let https: typeof import('node:https') | null = null;

/** How one POST ended: delivered (2xx), worth another try, or not (a refusal, or the receiver said no). */
export type AttemptResult =
  | { kind: 'delivered'; status: number }
  | { kind: 'retry'; status: number | null; error: string }
  | { kind: 'give-up'; status: number | null; error: string };

export type Resolver = (host: string) => Promise<{ address: string; family: number }[]>;

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

/** Statuses a receiver may answer differently later: everything else below 500 is its final no. */
const TRANSIENT = new Set([408, 425, 429]);

/**
 * The address to connect to: the URL's literal, or the first address its name resolves to that the allowlist
 * permits (public, or any but "never" when the host is listed by name). The connection is pinned to it, so a
 * name that resolves differently a moment later (DNS rebinding) cannot move the request elsewhere.
 */
async function pickAddress(target: AllowedTarget, resolve: Resolver): Promise<{ address: string; family: number } | { refused: string }> {
  const bare = target.host.startsWith('[') ? target.host.slice(1, -1) : target.host;
  const found = isIP(bare) !== 0 ? [{ address: bare, family: isIP(bare) }] : await resolve(bare);
  for (const a of found) {
    const kind = classifyAddress(a.address);
    if (kind === 'public' || (kind === 'internal' && target.listed)) return a;
  }
  const shown = found.map((a) => a.address).slice(0, 4).join(', ');
  return {
    refused:
      `"${target.host}" resolves to ${shown || 'nothing'}: loopback, link-local and private addresses are refused unless the host is ` +
      'listed by name in EXECD_NOTIFY_ALLOW (0.0.0.0, :: and multicast always)',
  };
}

/**
 * One callback POST: resolve and check the address, connect to exactly it, send, and judge the status line. Redirects
 * are never followed (a 3xx is a failed try). The answer's body is not read. Never rejects.
 */
export async function postOnce(
  target: AllowedTarget,
  body: Buffer,
  headers: Record<string, string>,
  timeoutMs: number,
  resolve: Resolver = systemResolver,
): Promise<AttemptResult> {
  const signal = AbortSignal.timeout(timeoutMs);
  const timedOut = (): AttemptResult => ({ kind: 'retry', status: null, error: `no answer within ${timeoutMs} ms (EXECD_NOTIFY_TIMEOUT_MS)` });
  let picked: Awaited<ReturnType<typeof pickAddress>>;
  try {
    const aborted = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
    picked = await Promise.race([pickAddress(target, resolve), aborted]);
  } catch (err) {
    if (signal.aborted) return timedOut();
    return { kind: 'retry', status: null, error: `cannot resolve "${target.host}": ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
  if ('refused' in picked) return { kind: 'give-up', status: null, error: picked.refused };
  const { address, family } = picked;
  const pinned: LookupFunction = (_host, options, callback) => {
    if (options.all) (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family }]);
    else callback(null, address, family);
  };
  const { url } = target;
  const hostname = target.host.startsWith('[') ? target.host.slice(1, -1) : target.host;
  const request = url.protocol === 'https:' ? (https ??= load('node:https') as typeof import('node:https')).request : httpRequest;
  return new Promise<AttemptResult>((done) => {
    let settled = false;
    const settle = (r: AttemptResult) => {
      if (!settled) done(r);
      settled = true;
    };
    const req = request({
      host: hostname,
      port: target.port,
      path: `${url.pathname}${url.search}`,
      method: 'POST',
      headers: { ...headers, 'content-length': String(body.length), host: url.host },
      agent: false,
      lookup: pinned,
      signal,
    });
    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      res.destroy(); // the body is not needed: never read (nor buffered) what a receiver sends back
      if (status >= 200 && status < 300) settle({ kind: 'delivered', status });
      else if (status >= 300 && status < 400) settle({ kind: 'retry', status, error: `the receiver answered ${status}: redirects are not followed` });
      else if (status >= 500 || TRANSIENT.has(status)) settle({ kind: 'retry', status, error: `the receiver answered ${status}` });
      else settle({ kind: 'give-up', status, error: `the receiver answered ${status}; not retried (4xx)` });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (signal.aborted) settle(timedOut());
      else settle({ kind: 'retry', status: null, error: `${err.code ?? 'error'}: ${err.message}`.slice(0, 300) });
    });
    req.end(body);
  });
}
