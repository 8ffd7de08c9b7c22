import { errorFrom, isAbort, unreachable } from './errors.js';

export interface Transport {
  /** The server's base URL without a trailing slash, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  readonly token: string | undefined;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  /** Query parameters; an array is the parameter repeated (?label=a=1&label=b=2). */
  query?: Record<string, string | number | boolean | readonly string[] | undefined>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export function queryString(query: RequestOptions['query'] = {}): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (Array.isArray(v)) for (const item of v as readonly string[]) params.append(k, item);
    else if (v !== undefined) params.set(k, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** One request; a Response that is not 2xx becomes an ExecdError, no answer at all one with status 0. */
export async function request(t: Transport, path: string, opts: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (t.token !== undefined) headers.authorization = `Bearer ${t.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`${t.url}${path}${queryString(opts.query)}`, {
      method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'),
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw unreachable(t.url, err);
  }
  if (!res.ok) throw await errorFrom(res);
  return res;
}

export async function json<T>(t: Transport, path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await request(t, path, opts);
  return (await res.json()) as T;
}
