import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp, LOG_REDACT } from '../../src/app.js';
import { testConfig } from './app.js';

/** One token per scope (ids = scope names with ":" as "-"), plus the env token of testConfig (every scope). */
export const SCOPED_TOKENS = {
  info: 'tok-info-0123456789abcdef',
  processes: 'tok-processes-0123456789',
  run: 'tok-run-0123456789abcdef',
  'jobs:read': 'tok-jobs-read-0123456789',
  'jobs:write': 'tok-jobs-write-012345678',
  admin: 'tok-admin-0123456789abcd',
} as const;

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

export function tempDir(prefix = 'execd-sec-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Write a tokens file with one token per scope, plus `extra` entries. */
export function writeTokensFile(dir: string, extra: unknown[] = []): string {
  const entries = Object.entries(SCOPED_TOKENS).map(([scope, token]) => ({ id: scope.replace(':', '-'), token, scopes: [scope] }));
  const p = join(dir, 'tokens.json');
  writeFileSync(p, JSON.stringify([...entries, ...extra]), { mode: 0o600 });
  return p;
}

export interface LoggedApp {
  app: FastifyInstance;
  /** Every log line, as written (JSON text). */
  lines: string[];
  /** Parsed log lines. */
  entries(): Array<Record<string, unknown>>;
}

/** buildApp with the production redaction, logging every line at trace level into memory. */
export async function appWithLogs(env: Record<string, string> = {}): Promise<LoggedApp> {
  const lines: string[] = [];
  const app = await buildApp(testConfig(env), {
    logger: { level: 'trace', redact: { paths: LOG_REDACT, censor: '[redacted]' }, stream: { write: (s: string) => void lines.push(s) } },
  });
  return { app, lines, entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/**
 * Every route of the app, from Fastify's own route tree (not from the docs):
 * [method, path with :params].
 */
export function routesOf(app: FastifyInstance): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^(.*?)(?:├── |└── )(.+?) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) continue;
    const depth = Math.round(m[1]!.length / 4);
    stack.length = depth;
    const path = (stack[depth - 1] ?? '') + m[2]!;
    stack[depth] = path;
    for (const method of m[3]!.split(',').map((s) => s.trim())) out.push([method, path]);
  }
  return out;
}

/** Operations of the app's OpenAPI document: method, path template, operationId, declared statuses. */
export interface Operation {
  method: string;
  path: string;
  operationId: string;
  statuses: Set<number>;
  open: boolean;
  op: Record<string, any>;
}

export function operationsOf(app: FastifyInstance): Operation[] {
  const doc = app.swagger() as Record<string, any>;
  const out: Operation[] = [];
  for (const [path, ops] of Object.entries<Record<string, any>>(doc.paths)) {
    for (const [method, op] of Object.entries<Record<string, any>>(ops)) {
      out.push({
        method: method.toUpperCase(),
        path,
        operationId: op.operationId,
        statuses: new Set(Object.keys(op.responses).map(Number)),
        open: Array.isArray(op.security) && op.security.length === 0,
        op,
      });
    }
  }
  return out;
}
