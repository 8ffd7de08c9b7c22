import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config.js';

describe('config', () => {
  it('has the documented defaults', () => {
    const c = parseConfig({});
    expect(c).toMatchObject({ host: '127.0.0.1', port: 8080, queueCapacity: 10000, syncTimeoutMs: 60000, maxOutputBytes: 67108864, bodyLimit: 1048576, logLevel: 'info', queueBackend: 'memory', tokenGenerated: true });
    expect(c.tokens).toHaveLength(1);
    expect(c.tokens[0]!.length).toBeGreaterThanOrEqual(32);
    expect(c.tokens[0], 'usable as a browser WebSocket subprotocol bearer.<token>').toMatch(/^[A-Za-z0-9_-]+$/);
    expect(c.queues).toEqual([{ name: 'default', concurrency: expect.any(Number) }]);
    expect(c.jobTimeoutMs).toBe(3_600_000);
  });

  it('a bad setting shows the value it got, never a secret\'s', () => {
    const message = (env: Record<string, string>) => {
      try {
        parseConfig(env);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error('accepted');
    };
    expect(message({ EXECD_PORT: '70000' })).toBe('invalid setting EXECD_PORT must be at most 65535 (got "70000")');
    expect(message({ EXECD_LOG_LEVEL: 'loud' })).toMatch(/EXECD_LOG_LEVEL.*\(got "loud"\)$/);
    expect(message({ EXECD_JOB_TIMEOUT_MS: '1h' })).toMatch(/EXECD_JOB_TIMEOUT_MS.*\(got "1h"\)$/);
    const token = message({ EXECD_TOKEN: 'short-secret' });
    expect(token).toMatch(/EXECD_TOKEN/);
    expect(token).not.toContain('short-secret');
    const redis = message({ EXECD_REDIS_URL: 'redis://app:hunter2-secret@redis internal:6379' });
    expect(redis).toMatch(/EXECD_REDIS_URL/);
    expect(redis).not.toContain('hunter2');
  });

  it('jobs stop after EXECD_JOB_TIMEOUT_MS (an hour by default); 0 is no default', () => {
    expect(parseConfig({ EXECD_JOB_TIMEOUT_MS: '5000' }).jobTimeoutMs).toBe(5000);
    expect(parseConfig({ EXECD_JOB_TIMEOUT_MS: '0' }).jobTimeoutMs).toBeUndefined();
  });

  it('data and instance directories: unset, a fresh one per start (made at start) and records per user; set, records per data directory', () => {
    const unset = parseConfig({});
    expect(unset.dataDir).toBeUndefined(); // ops/data-dir.ts makes <tmpdir>/execd-XXXXXX at start
    expect(unset.instanceDir).toMatch(new RegExp(`/execd-instances-${process.getuid!()}$`));
    expect(parseConfig({ EXECD_DATA_DIR: '/var/lib/execd' })).toMatchObject({ dataDir: '/var/lib/execd', instanceDir: '/var/lib/execd/instances' });
    expect(parseConfig({ EXECD_DATA_DIR: '/var/lib/execd', EXECD_INSTANCE_DIR: '/run/execd' }).instanceDir).toBe('/run/execd');
  });

  it('parses queues, tokens and numbers', () => {
    const c = parseConfig({ EXECD_QUEUES: 'default:4, cpu:2,io:32', EXECD_TOKEN: 'aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb', EXECD_PORT: '0' });
    expect(c.queues).toEqual([{ name: 'default', concurrency: 4 }, { name: 'cpu', concurrency: 2 }, { name: 'io', concurrency: 32 }]);
    expect(c.tokens).toEqual(['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb']);
    expect(c.tokenGenerated).toBe(false);
    expect(c.port).toBe(0);
  });

  it.each([
    [{ EXECD_PORT: 'abc' }, /EXECD_PORT/],
    [{ EXECD_PORT: '70000' }, /EXECD_PORT/],
    [{ EXECD_PORT: '80.5' }, /EXECD_PORT/],
    [{ EXECD_QUEUES: 'default' }, /EXECD_QUEUES/],
    [{ EXECD_QUEUES: 'a:1,a:2' }, /EXECD_QUEUES/],
    [{ EXECD_QUEUES: 'bad name:1' }, /EXECD_QUEUES/],
    [{ EXECD_QUEUES: 'a:0' }, /EXECD_QUEUES/],
    [{ EXECD_LOG_LEVEL: 'loud' }, /EXECD_LOG_LEVEL/],
    [{ EXECD_QUEUE_BACKEND: 'kafka' }, /EXECD_QUEUE_BACKEND/],
    [{ EXECD_QUEUE_BACKEND: 'redis' }, /EXECD_REDIS_URL/],
    [{ EXECD_TOKEN: 'short' }, /EXECD_TOKEN/],
    [{ EXECD_HOST: 'not a host' }, /EXECD_HOST/],
    [{ EXECD_HOST: '0.0.0.0' }, /non-loopback.*EXECD_TOKEN/],
    [{ EXECD_HOST: '::' }, /non-loopback.*EXECD_TOKEN/],
    [{ EXECD_ROLE: 'api' }, /EXECD_ROLE.*redis/],
    [{ EXECD_ROLE: 'boss', EXECD_QUEUE_BACKEND: 'redis', EXECD_REDIS_URL: 'redis://127.0.0.1:6379' }, /EXECD_ROLE/],
    [{ EXECD_REDIS_PREFIX: 'a b', EXECD_QUEUE_BACKEND: 'redis', EXECD_REDIS_URL: 'redis://127.0.0.1:6379' }, /EXECD_REDIS_PREFIX/],
    [{ EXECD_NODE_ID: 'x'.repeat(129) }, /EXECD_NODE_ID/],
    [{ EXECD_REDIS_STALL_MS: '500' }, /EXECD_REDIS_STALL_MS/],
  ])('refuses %o with one clear line', (env, message) => {
    expect(() => parseConfig(env)).toThrow(ConfigError);
    try {
      parseConfig(env);
    } catch (err) {
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('reads the Redis settings: role, prefix, node id and stall interval', () => {
    const c = parseConfig({ EXECD_QUEUE_BACKEND: 'redis', EXECD_REDIS_URL: 'redis://127.0.0.1:6379/2', EXECD_ROLE: 'worker', EXECD_REDIS_PREFIX: 'team-a', EXECD_NODE_ID: 'w1', EXECD_REDIS_STALL_MS: '2000' });
    expect(c).toMatchObject({ queueBackend: 'redis', redisUrl: 'redis://127.0.0.1:6379/2', role: 'worker', redisPrefix: 'team-a', nodeId: 'w1', redisStallMs: 2000 });
    expect(parseConfig({})).toMatchObject({ role: 'all', redisPrefix: 'execd', redisStallMs: 5000, nodeId: expect.stringMatching(new RegExp(`-${process.pid}$`)) });
  });

  it('allows a non-loopback host with a token', () => {
    expect(parseConfig({ EXECD_HOST: '0.0.0.0', EXECD_TOKEN: 'x'.repeat(16) }).host).toBe('0.0.0.0');
  });
});
