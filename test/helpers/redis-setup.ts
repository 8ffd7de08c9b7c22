import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { startRedis, type PrivateRedis } from './redis.js';

/**
 * vitest globalSetup: the Redis the tests need (test/e2e/redis-*.test.ts, and every test when
 * EXECD_TEST_QUEUE_BACKEND=redis). EXECD_TEST_REDIS_URL when set, else 127.0.0.1:6379 when a Redis
 * answers there, else a redis-server of this run's own on a free port (when one is installed), which
 * the test processes find in EXECD_TEST_REDIS_URL. With none, one line says what is missing: the run
 * fails at once on the Redis backend; otherwise the Redis test files fail with that line
 * (EXECD_TEST_REDIS_MISSING, read by requireRedis()) and the others run.
 */

const HOW = 'apt-get install redis-server (npm test then starts one), or set EXECD_TEST_REDIS_URL=redis://host:port';

async function answers(url: string): Promise<boolean> {
  const redis = new Redis(url, {
    lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000, enableOfflineQueue: false,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

export default async function setup(): Promise<(() => Promise<void>) | void> {
  const given = process.env.EXECD_TEST_REDIS_URL;
  let missing: string | null = null;
  let own: PrivateRedis | null = null;
  if (given) {
    if (!(await answers(given))) missing = `npm test: no Redis answers at EXECD_TEST_REDIS_URL=${given}`;
  } else if (!(await answers('redis://127.0.0.1:6379'))) {
    if (spawnSync('redis-server', ['--version']).status === 0) {
      own = await startRedis({ aof: false });
      process.env.EXECD_TEST_REDIS_URL = own.url;
      process.stderr.write(`npm test: no Redis on 127.0.0.1:6379; started redis-server on ${own.url} for this run\n`);
    } else {
      missing = `npm test: the Redis tests need a Redis (none on 127.0.0.1:6379, and redis-server is not installed): ${HOW}`;
    }
  }
  if (missing !== null) {
    if (process.env.EXECD_TEST_QUEUE_BACKEND === 'redis') {
      // Every test needs it: the line, and nothing more (a thrown error would come with vitest's frames).
      process.stderr.write(`${missing} (EXECD_TEST_QUEUE_BACKEND=redis needs it for every test)\n`);
      process.exit(1);
    }
    process.env.EXECD_TEST_REDIS_MISSING = missing;
    process.stderr.write(`${missing}\n`);
  }
  if (own) return () => own.close();
}
