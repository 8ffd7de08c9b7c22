import { randomBytes } from 'node:crypto';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * All settings, from one schema. `loadConfig(process.env)` is called by main.ts
 * only; tests build a Config with `testConfig()` or `parseConfig()`.
 */

const intString = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number`)
    .transform(Number)
    .pipe(z.number().int().min(min, `${name} must be at least ${min}`).max(max, `${name} must be at most ${max}`));

const QUEUE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export interface QueueSetting {
  name: string;
  concurrency: number;
}

function parseQueues(value: string, ctx: z.RefinementCtx): QueueSetting[] {
  const out: QueueSetting[] = [];
  for (const part of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([^:]+):(\d+)$/.exec(part);
    if (!m || !QUEUE_NAME.test(m[1]!) || Number(m[2]) < 1 || Number(m[2]) > 1024) {
      ctx.addIssue({ code: 'custom', message: `EXECD_QUEUES entry "${part}" must be name:workers (workers 1..1024)` });
      return z.NEVER;
    }
    if (out.some((q) => q.name === m[1])) {
      ctx.addIssue({ code: 'custom', message: `EXECD_QUEUES names queue "${m[1]}" twice` });
      return z.NEVER;
    }
    out.push({ name: m[1]!, concurrency: Number(m[2]) });
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'EXECD_QUEUES must name at least one queue' });
    return z.NEVER;
  }
  return out;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const envSchema = z.object({
  EXECD_HOST: z.string().min(1).default('127.0.0.1'),
  EXECD_PORT: intString('EXECD_PORT', 0, 65535).default(8080),
  EXECD_TOKEN: z.string().optional(),
  EXECD_QUEUES: z.string().transform(parseQueues).optional(),
  EXECD_QUEUE_CAPACITY: intString('EXECD_QUEUE_CAPACITY', 1).default(10000),
  EXECD_TIMEOUT_MS: intString('EXECD_TIMEOUT_MS', 1).default(60000),
  EXECD_JOB_TIMEOUT_MS: intString('EXECD_JOB_TIMEOUT_MS', 1).optional(),
  EXECD_KILL_GRACE_MS: intString('EXECD_KILL_GRACE_MS', 0, 600000).default(2000),
  EXECD_MAX_OUTPUT_BYTES: intString('EXECD_MAX_OUTPUT_BYTES', 0).default(67108864),
  EXECD_MAX_SYNC_RUNS: intString('EXECD_MAX_SYNC_RUNS', 1).default(64),
  EXECD_PIPE_DRAIN_MS: intString('EXECD_PIPE_DRAIN_MS', 0, 60000).default(250),
  EXECD_DATA_DIR: z.string().min(1).optional(),
  EXECD_QUEUE_BACKEND: z.enum(['memory', 'redis']).default('memory'),
  EXECD_REDIS_URL: z.string().url().optional(),
  EXECD_BODY_LIMIT: intString('EXECD_BODY_LIMIT', 1024).default(1048576),
  EXECD_LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  EXECD_PATH: z.string().min(1).default('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'),
});

export interface Config {
  host: string;
  port: number;
  /** Accepted bearer tokens. */
  tokens: string[];
  /** True when no token was configured and one was generated at start. */
  tokenGenerated: boolean;
  queues: QueueSetting[];
  queueCapacity: number;
  syncTimeoutMs: number;
  jobTimeoutMs: number | undefined;
  killGraceMs: number;
  maxOutputBytes: number;
  maxSyncRuns: number;
  pipeDrainMs: number;
  dataDir: string;
  queueBackend: 'memory' | 'redis';
  redisUrl: string | undefined;
  bodyLimit: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** PATH given to children. */
  childPath: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

/** Parse settings from an environment map; throws ConfigError with one clear line. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('EXECD_') && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const msg = issue.message.startsWith(key) ? issue.message : `${key}: ${issue.message}`;
    throw new ConfigError(`invalid setting ${msg}`);
  }
  const e = parsed.data;
  if (e.EXECD_HOST !== 'localhost' && !isIP(e.EXECD_HOST)) {
    throw new ConfigError(`invalid setting EXECD_HOST: "${e.EXECD_HOST}" is not an IP address or localhost`);
  }
  const tokens = (e.EXECD_TOKEN ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (tokens.some((t) => t.length < 16)) {
    throw new ConfigError('invalid setting EXECD_TOKEN: every token must be at least 16 characters');
  }
  let tokenGenerated = false;
  if (tokens.length === 0) {
    if (!isLoopback(e.EXECD_HOST)) {
      throw new ConfigError(
        `refusing to listen on non-loopback EXECD_HOST=${e.EXECD_HOST} without a configured token: set EXECD_TOKEN`,
      );
    }
    tokens.push(randomBytes(24).toString('base64url'));
    tokenGenerated = true;
  }
  if (e.EXECD_QUEUE_BACKEND === 'redis' && !e.EXECD_REDIS_URL) {
    throw new ConfigError('invalid setting EXECD_REDIS_URL: required when EXECD_QUEUE_BACKEND=redis');
  }
  return {
    host: e.EXECD_HOST,
    port: e.EXECD_PORT,
    tokens,
    tokenGenerated,
    queues: e.EXECD_QUEUES ?? [{ name: 'default', concurrency: availableParallelism() }],
    queueCapacity: e.EXECD_QUEUE_CAPACITY,
    syncTimeoutMs: e.EXECD_TIMEOUT_MS,
    jobTimeoutMs: e.EXECD_JOB_TIMEOUT_MS,
    killGraceMs: e.EXECD_KILL_GRACE_MS,
    maxOutputBytes: e.EXECD_MAX_OUTPUT_BYTES,
    maxSyncRuns: e.EXECD_MAX_SYNC_RUNS,
    pipeDrainMs: e.EXECD_PIPE_DRAIN_MS,
    dataDir: e.EXECD_DATA_DIR ?? join(tmpdir(), `execd-${process.pid}`),
    queueBackend: e.EXECD_QUEUE_BACKEND,
    redisUrl: e.EXECD_REDIS_URL,
    bodyLimit: e.EXECD_BODY_LIMIT,
    logLevel: e.EXECD_LOG_LEVEL,
    childPath: e.EXECD_PATH,
  };
}

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): Config => parseConfig(env);
