import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import supertest from 'supertest';
import { buildApp, type BuildOptions } from '../../src/app.js';
import { parseConfig, type Config } from '../../src/config.js';

export const TOKEN = 'test-token-0123456789abcdef';
/** The suite runs on the Redis backend (EXECD_TEST_QUEUE_BACKEND=redis): tests of the memory backend's own files and shutdown skip. */
export const ON_REDIS = process.env.EXECD_TEST_QUEUE_BACKEND === 'redis';
export const AUTH = { authorization: `Bearer ${TOKEN}` };

/**
 * A Config as main.ts would build it from these EXECD_* variables (token preset).
 * Load shedding is off unless a test asks for it: two busy cores lag the event loop
 * past its default threshold, and a test's 503 would then say nothing about its subject.
 */
export function testConfig(env: Record<string, string> = {}): Config {
  // CI runs the suite once per spawner: EXECD_SPAWNER=native|child_process reaches every test app.
  const spawner = process.env.EXECD_SPAWNER ? { EXECD_SPAWNER: process.env.EXECD_SPAWNER } : {};
  // EXECD_TEST_QUEUE_BACKEND=redis runs a test's apps on the Redis backend (127.0.0.1:6379), each with a fresh key prefix.
  const backend =
    process.env.EXECD_TEST_QUEUE_BACKEND === 'redis'
      ? { EXECD_QUEUE_BACKEND: 'redis', EXECD_REDIS_URL: process.env.EXECD_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', EXECD_REDIS_PREFIX: `execd-test-${randomBytes(6).toString('hex')}` }
      : {};
  return parseConfig({ EXECD_TOKEN: TOKEN, EXECD_KILL_GRACE_MS: '500', EXECD_MAX_EVENT_LOOP_DELAY_MS: '0', EXECD_DATA_DIR: testDataDir(), ...spawner, ...backend, ...env });
}

let dataDir: string | undefined;
/**
 * One data directory for the test process's apps (each keeps its files in a directory of its own below it),
 * removed when the process exits: an app a test never closes leaves nothing in the machine's temporary directory.
 */
function testDataDir(): string {
  if (dataDir === undefined) {
    const dir = (dataDir = mkdtempSync(join(tmpdir(), 'execd-test-data-')));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return dataDir;
}

export interface TestApp {
  app: FastifyInstance;
  config: Config;
  /** supertest against the real listening server. */
  http: ReturnType<typeof supertest>;
  url: string;
  close(): Promise<void>;
}

/** Build the app and listen on a free loopback port. */
export async function startApp(env: Record<string, string> = {}, options: BuildOptions = {}): Promise<TestApp> {
  const config = testConfig(env);
  if (config.queueBackend === 'redis' && env.EXECD_ROLE === undefined && ON_REDIS) return startPair(config, env, options);
  const app = await buildApp(config, options);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, config, http: supertest(app.server), url, close: () => app.close().then(() => dropRedisKeys(config)) };
}

/**
 * On the Redis backend every test goes through another node: the app it talks to is an API node,
 * and its jobs run on a second, worker-only app sharing the key prefix (as two processes would).
 */
async function startPair(config: Config, env: Record<string, string>, options: BuildOptions): Promise<TestApp> {
  const shared = { ...env, EXECD_REDIS_PREFIX: config.redisPrefix };
  const workerConfig = testConfig({ ...shared, EXECD_ROLE: 'worker', EXECD_NODE_ID: `test-worker-${config.redisPrefix}` });
  const apiConfig = testConfig({ ...shared, EXECD_ROLE: 'api', EXECD_NODE_ID: `test-api-${config.redisPrefix}` });
  const worker = await buildApp(workerConfig, options);
  await worker.ready();
  const app = await buildApp(apiConfig, options);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  // The worker has joined once the API node sees its workers (its first heartbeat).
  for (let i = 0; i < 100; i++) {
    const queues = await app.services.jobs.queues().catch(() => []);
    if (queues.length > 0 && queues.every((q) => q.concurrency > 0)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    app,
    config: apiConfig,
    http: supertest(app.server),
    url,
    close: async () => {
      await Promise.all([app.close(), worker.close()]);
      await dropRedisKeys(apiConfig);
    },
  };
}

/** Delete every key of a test app's Redis prefix (nothing for the memory backend). */
export async function dropRedisKeys(config: Config): Promise<void> {
  if (config.queueBackend !== 'redis') return;
  const redis = new Redis(config.redisUrl!, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${config.redisPrefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
