import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Answered even when the server sheds load (liveness: a busy server is not a dead one). */
    neverShed?: boolean;
  }
  interface FastifyInstance {
    /** The load-shedding sampler, on or off (null: EXECD_MAX_EVENT_LOOP_DELAY_MS=0). */
    loadShedding: LoadShedding | null;
  }
}

/** The histogram's timer, as @fastify/under-pressure's (whose measure this is): a delay is what lies beyond it. */
const RESOLUTION_MS = 10;

export interface LoadShedding {
  /**
   * Sample the event loop (on) or not (off). Off at rest (main.ts, services/tiers.ts): the histogram's timer wakes
   * the process 100 times a second, 20× the CPU of everything else a server at rest does (docs/benchmarks.md), for
   * a measure nothing reads until the next request, which turns it back on. Off, nothing is shed.
   */
  sample(on: boolean): void;
}

/**
 * Load shedding: while the event loop's mean delay over the last sample is past `maxEventLoopDelayMs`, requests get
 * a quick 503 with Retry-After instead of a slow answer. The measure is @fastify/under-pressure's (the mean of a
 * 10 ms histogram, less its resolution; a sample without a single tick, a loop blocked throughout, is infinite), kept
 * here so that it can rest, and with no /proc read per sample. The API's codes are fixed, so the problem is
 * QUEUE_FULL, detail "server overloaded" (the closest: come back later, the server has no room now). /healthz is
 * exempt.
 */
export function registerLoadShedding(app: FastifyInstance, maxEventLoopDelayMs: number, onShed: () => void): void {
  if (maxEventLoopDelayMs <= 0) {
    app.decorate('loadShedding', null);
    return;
  }
  // A sample at least every second, and often enough that a brief stall is seen and forgotten quickly.
  const sampleMs = Math.min(1000, Math.max(100, maxEventLoopDelayMs));
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  let delayMs = 0;
  const read = (): void => {
    const mean = Math.max(0, histogram.mean / 1e6 - RESOLUTION_MS);
    delayMs = Number.isNaN(mean) ? Number.POSITIVE_INFINITY : mean;
    histogram.reset();
  };
  let timer: NodeJS.Timeout | null = null;
  const shedding: LoadShedding = {
    sample(on) {
      if (on === (timer !== null)) return;
      if (on) {
        histogram.reset();
        histogram.enable();
        timer = setInterval(read, sampleMs).unref();
      } else {
        histogram.disable();
        clearInterval(timer!);
        timer = null;
        delayMs = 0;
      }
    },
  };
  shedding.sample(true);
  app.decorate('loadShedding', shedding);
  app.addHook('onClose', (_app, done) => {
    shedding.sample(false);
    done();
  });
  // A callback hook: every request passes it.
  app.addHook('onRequest', (request, _reply, done) => {
    if (delayMs <= maxEventLoopDelayMs || request.routeOptions.config.neverShed === true) {
      done();
      return;
    }
    onShed();
    const detail = `server overloaded: event loop delay ${Math.round(delayMs)} ms is past EXECD_MAX_EVENT_LOOP_DELAY_MS (${maxEventLoopDelayMs} ms)`;
    done(new ApiError('QUEUE_FULL', detail, { reason: 'overloaded' }, { retryAfter: 1 }));
  });
}
