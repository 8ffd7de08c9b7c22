import { ExecdError } from './errors.js';
import { queryString, request, type Transport } from './http.js';
import { SocketReader, sleep, socketAuth } from './socket.js';
import type { ClientEvent } from './types.js';

/**
 * GET /v1/events as an async iterator: every job's lifecycle (queued, started, finished). After a dropped
 * connection it reconnects and yields `{type: 'reconnected'}`: events in between may be missed, so a
 * dashboard refetches GET /v1/jobs then (as after a `lagged` frame).
 */
export async function* jobEvents(
  t: Transport,
  opts: { signal?: AbortSignal; maxAttempts?: number; label?: readonly string[] } = {},
): AsyncGenerator<ClientEvent, void, undefined> {
  let failures = 0;
  let delay = 100;
  let connectedBefore = false;
  const query = queryString({ label: opts.label });
  while (!opts.signal?.aborted) {
    const socket = new SocketReader(`${t.url.replace(/^http/, 'ws')}/v1/events${query}`, socketAuth(t.token));
    const abort = () => socket.close();
    opts.signal?.addEventListener('abort', abort, { once: true });
    try {
      if (await socket.open) {
        failures = 0;
        delay = 100;
        if (connectedBefore) yield { type: 'reconnected' };
        connectedBefore = true;
      }
      for (;;) {
        const item = await socket.next();
        if (item.kind === 'text') {
          yield JSON.parse(item.text) as ClientEvent;
          continue;
        }
        if (item.kind !== 'close') continue;
        if (opts.signal?.aborted) return;
        if (item.opened && item.code === 1008) throw new ExecdError(401, 'UNAUTHORIZED', item.reason || 'the token was revoked');
        if (!item.opened) {
          // The handshake's refusal, asked again over HTTP (a 400 there is only "send an upgrade").
          await request(t, '/v1/events', { signal: opts.signal, query: { label: opts.label } }).catch((err: unknown) => {
            if (err instanceof ExecdError && err.refused && err.status !== 400 && err.status !== 429) throw err;
          });
          if (++failures >= (opts.maxAttempts ?? 8)) throw new ExecdError(0, 'UNREACHABLE', `cannot open ${t.url}/v1/events`);
        }
        await sleep(delay, opts.signal);
        delay = Math.min(delay * 2, 5000);
        break;
      }
    } finally {
      opts.signal?.removeEventListener('abort', abort);
      socket.close();
    }
  }
}
