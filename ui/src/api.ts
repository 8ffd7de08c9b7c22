/**
 * A thin client of execd's /v1 API for the dashboard: fetch with the bearer token, problem+json errors as
 * ApiProblem. The token lives in sessionStorage only (never a URL, a cookie or localStorage): it is gone when
 * the tab closes.
 */

const TOKEN_KEY = 'execd.token';

export const tokenStore = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (token: string): void => sessionStorage.setItem(TOKEN_KEY, token),
  clear: (): void => sessionStorage.removeItem(TOKEN_KEY),
};

export type Scope = 'info' | 'processes' | 'run' | 'jobs:read' | 'jobs:write' | 'admin';
export type JobState = 'scheduled' | 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'canceled' | 'lost';
export const TERMINAL: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'timed_out', 'canceled', 'lost']);

export interface Whoami {
  id: string;
  scopes: Scope[];
}
export const can = (who: Whoami | null, scope: Scope): boolean => !!who && (who.scopes.includes(scope) || who.scopes.includes('admin'));

export interface JobResult {
  exitCode: number | null;
  signal: string | null;
  returncode: number | null;
  timedOut: boolean;
  durationMs?: number;
  truncated?: { stdout: boolean; stderr: boolean };
  truncatedReason?: { stdout: string | null; stderr: string | null };
  usage?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface Job {
  id: string;
  state: JobState;
  queue: string;
  position: number | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  spec: Record<string, unknown> & { argv?: string[]; command?: string; env?: Record<string, string>; stdin?: unknown };
  pid: number | null;
  result: JobResult | null;
  outputBytes: { stdout: number; stderr: number };
  error: { code: string; message: string; errno?: string } | null;
  // Since retries, delayed starts and labels (absent from an older execd):
  attempt?: number;
  maxAttempts?: number;
  attempts?: { attempt: number; node: string; startedAt: string; finishedAt: string | null; state: JobState; result: JobResult | null }[];
  runAt?: string | null;
  labels?: Record<string, string>;
  node?: string | null;
}

export interface QueueInfo {
  name: string;
  concurrency: number;
  running: number;
  queued: number;
  scheduled?: number;
  capacity: number;
  processed: number;
  failed: number;
}

export class ApiProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(`${status} ${code}: ${detail}`);
  }
}

/** A call to /v1 with the stored token; a non-2xx answer throws ApiProblem (its detail shown as text). */
export interface CallOptions {
  method?: string;
  body?: unknown;
  accept?: string;
  signal?: AbortSignal;
}

export async function api<T>(path: string, init: CallOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: init.accept ?? 'application/json' };
  const token = tokenStore.get();
  if (token) headers.authorization = `Bearer ${token}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body), signal: init.signal });
  } catch (err) {
    throw new ApiProblem(0, 'NETWORK', `execd did not answer (${(err as Error).message})`);
  }
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('content-type') ?? '';
  if (!res.ok) {
    const body = type.includes('json') ? ((await res.json().catch(() => ({}))) as Record<string, unknown>) : {};
    throw new ApiProblem(res.status, String(body.code ?? res.status), String(body.detail ?? res.statusText), body);
  }
  return (type.includes('json') ? await res.json() : await res.text()) as T;
}

/** The raw bytes of a job's stream (GET /v1/jobs/{id}/output), for the download button. */
export async function outputBlob(id: string, stream: 'stdout' | 'stderr'): Promise<Blob> {
  const res = await fetch(`/v1/jobs/${encodeURIComponent(id)}/output?stream=${stream}`, { headers: { authorization: `Bearer ${tokenStore.get() ?? ''}` } });
  if (!res.ok) throw new ApiProblem(res.status, String(res.status), `the ${stream} download failed`);
  return res.blob();
}

/** The WebSocket URL of a /v1 path on this origin (ws: or wss: as the page). */
export const wsUrl = (path: string): string => `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;

/** The subprotocols that carry the token (a browser cannot set Authorization on a WebSocket). */
export const bearerProtocols = (): string[] => [`bearer.${tokenStore.get() ?? ''}`];
