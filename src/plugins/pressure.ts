import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Answered even when the server sheds load (liveness: a busy server is not a dead one). */
    neverShed?: boolean;
  }
}

/**
 * Load shedding (@fastify/under-pressure): while the event loop's mean delay
 * over the last sample is past `maxEventLoopDelayMs`, requests get a quick 503
 * with Retry-After instead of a slow answer. The API's codes are fixed, so the
 * problem is QUEUE_FULL, detail "server overloaded" (the closest: come back
 * later, the server has no room now). /healthz is exempt.
 */
export async function registerLoadShedding(app: FastifyInstance, maxEventLoopDelayMs: number, onShed: () => void): Promise<void> {
  if (maxEventLoopDelayMs <= 0) return;
  await app.register(underPressure, {
    maxEventLoopDelay: maxEventLoopDelayMs,
    // A sample at least every second, and often enough that a brief stall is seen and forgotten quickly.
    sampleInterval: Math.min(1000, Math.max(100, maxEventLoopDelayMs)),
    pressureHandler: async (request, _reply, type, value) => {
      if (request.routeOptions.config.neverShed === true) return;
      onShed();
      const detail = `server overloaded: ${type === 'eventLoopDelay' ? `event loop delay ${Math.round(Number(value))} ms` : type} is past EXECD_MAX_EVENT_LOOP_DELAY_MS (${maxEventLoopDelayMs} ms)`;
      throw new ApiError('QUEUE_FULL', detail, { reason: 'overloaded' }, { retryAfter: 1 });
    },
  });
}
