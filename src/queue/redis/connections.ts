import type { FastifyBaseLogger } from 'fastify';
import { Redis, type RedisOptions } from 'ioredis';
import { BackendUnavailable, QueueError } from '../errors.js';

/** Longest wait for Redis on a request before the API answers 503. */
export const UNAVAILABLE_MS = 1000;

export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * One node's Redis connections and what they share: outage logging, the
 * fail-fast rule for requests, an orderly quit. Requests (`cmd`) fail fast
 * and are never resent after a reconnect (an answered 503 must not be applied
 * later); everything else waits through an outage.
 */
export class Connections {
  readonly cmd: Redis;
  private readonly all: Redis[] = [];
  private down = false;
  private readonly lastWarned = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly nodeId: string,
    private readonly log: FastifyBaseLogger,
  ) {
    this.cmd = this.open('cmd', { ...this.failFast, commandTimeout: UNAVAILABLE_MS });
  }

  readonly failFast: RedisOptions = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 };
  readonly patient: RedisOptions = { maxRetriesPerRequest: null };

  open(name: string, options: RedisOptions): Redis {
    const conn = new Redis(this.url, { connectionName: `execd-${name}-${this.nodeId}`, ...options });
    conn.on('error', (err) => this.redisError(err, name));
    conn.on('ready', () => {
      if (!this.down) return;
      this.down = false;
      this.log.info({ node: this.nodeId }, 'redis reachable again');
    });
    this.all.push(conn);
    return conn;
  }

  /** Run a request against Redis: waits up to a second for a connection, and turns a Redis failure into BackendUnavailable. */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.cmd.status !== 'ready') {
      if (this.cmd.status === 'end' || this.closed) throw this.unavailable(new Error('the connection is closed'));
      const ready = await withTimeout(new Promise<boolean>((resolve) => this.cmd.once('ready', () => resolve(true))), UNAVAILABLE_MS).catch(() => false);
      if (!ready) throw this.unavailable(new Error('not connected'));
    }
    try {
      return await fn();
    } catch (err) {
      if (err instanceof QueueError) throw err;
      throw this.unavailable(err);
    }
  }

  unavailable(err: unknown): BackendUnavailable {
    // Logged at most every 10 s, and without the outage flag: a command that failed on a live connection
    // (a timeout) must not keep the next real outage from being logged.
    this.warnEvery('request', { err: { message: (err as Error)?.message }, node: this.nodeId }, 'a request to redis failed: answered 503');
    return new BackendUnavailable('the queue backend (redis) is unreachable; try again shortly', {}, { cause: err });
  }

  warnEvery(kind: string, fields: object, message: string): void {
    const now = Date.now();
    if (now - (this.lastWarned.get(kind) ?? 0) < 10_000) return;
    this.lastWarned.set(kind, now);
    this.log.warn(fields, message);
  }

  /** Connection trouble is logged once per outage, not once per retry. */
  redisError(err: Error, where: string): void {
    if (this.down) return;
    this.down = true;
    this.log.warn({ err: { message: err?.message }, where, node: this.nodeId }, 'redis unreachable');
  }

  /** Written states and output reach Redis before the connections go (QUIT waits for them); not forever. */
  async quit(): Promise<void> {
    this.closed = true;
    const conns = this.all;
    // A connection still connecting finishes first (briefly): quitting it mid-handshake rejects ioredis's own
    // handshake commands (INFO, CLIENT SETINFO, SUBSCRIBE) with nobody to catch them.
    await Promise.allSettled(conns.map((c) => (c.status === 'ready' ? null : withTimeout(new Promise((r) => c.once('ready', r)), 1000))));
    await Promise.allSettled(conns.map((c) => withTimeout(c.quit(), 2000).catch(() => c.disconnect())));
  }

  /** No request goes out from now on (a shutdown is under way). */
  markClosing(): void {
    this.closed = true;
  }
}
