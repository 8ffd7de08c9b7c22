import type { FastifyInstance } from 'fastify';
import supertest from 'supertest';
import { buildApp, type BuildOptions } from '../../src/app.js';
import { parseConfig, type Config } from '../../src/config.js';

export const TOKEN = 'test-token-0123456789abcdef';
export const AUTH = { authorization: `Bearer ${TOKEN}` };

/**
 * A Config as main.ts would build it from these EXECD_* variables (token preset).
 * Load shedding is off unless a test asks for it: two busy cores lag the event loop
 * past its default threshold, and a test's 503 would then say nothing about its subject.
 */
export function testConfig(env: Record<string, string> = {}): Config {
  // CI runs the suite once per spawner: EXECD_SPAWNER=native|child_process reaches every test app.
  const spawner = process.env.EXECD_SPAWNER ? { EXECD_SPAWNER: process.env.EXECD_SPAWNER } : {};
  return parseConfig({ EXECD_TOKEN: TOKEN, EXECD_KILL_GRACE_MS: '500', EXECD_MAX_EVENT_LOOP_DELAY_MS: '0', ...spawner, ...env });
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
  const app = await buildApp(config, options);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, config, http: supertest(app.server), url, close: () => app.close() };
}
