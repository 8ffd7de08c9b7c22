import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import type { Services } from '../services/index.js';
import { Shutdown } from '../ops/shutdown.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The graceful shutdown (main.ts runs it on SIGTERM/SIGINT). */
    shutdown: Shutdown;
  }
  interface FastifyContextConfig {
    /** Answered while the server drains (health probes, metrics); every other route answers 503 SHUTTING_DOWN. */
    duringDrain?: boolean;
  }
}

/** Open connections still there this long after the close began are cut (every process has ended by then). */
const FORCE_CLOSE_MS = 1500;
/** The set of requests in flight is swept of those whose client left once it has grown to twice its last swept size (and at least this). */
const SWEEP_AT_LEAST = 256;

/**
 * The HTTP side of the shutdown: decorates `app.shutdown`, and from the
 * moment it starts (or app.close() is called directly) every new request but
 * the probes gets 503 SHUTTING_DOWN with Retry-After: a load balancer moves on.
 */
export function registerShutdown(app: FastifyInstance, services: Services): Shutdown {
  // Requests being answered, probes and WebSocket upgrades aside (a viewer is closed with 1001, not waited for).
  const inflight = new Set<FastifyRequest>();
  let sweepAt = SWEEP_AT_LEAST;
  /**
   * The requests whose client is still there. A client that closes its connection after sending its whole
   * request (an abandoned POST /v1/run) gets no answer, and Fastify then runs neither onResponse nor
   * onRequestAbort for it: without this sweep it would hold every later drain for the whole grace. Swept
   * when counted, not with a listener per request (the hot path), and when the set has doubled (no leak).
   */
  const clientsStillThere = (): number => {
    for (const request of inflight) if (request.raw.socket?.destroyed !== false) inflight.delete(request);
    sweepAt = Math.max(SWEEP_AT_LEAST, inflight.size * 2);
    return inflight.size;
  };
  const shutdown = new Shutdown({
    requestsInFlight: clientsStillThere,
    jobs: services.jobs,
    tracker: services.tracker,
    log: app.log,
    graceMs: services.config.shutdownGraceMs,
    killGraceMs: services.config.killGraceMs,
    pipeDrainMs: services.config.pipeDrainMs,
    closeServer: async () => {
      const force = setTimeout(() => app.server.closeAllConnections(), FORCE_CLOSE_MS).unref();
      try {
        await app.close();
      } finally {
        clearTimeout(force);
      }
    },
  });
  app.decorate('shutdown', shutdown);
  app.addHook('preClose', async () => shutdown.refuseNewWork());
  // Callback hooks: every request passes them, and an async hook costs a promise each.
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.routeOptions.config.duringDrain === true) {
      done();
      return;
    }
    if (shutdown.draining) {
      done(new ApiError('SHUTTING_DOWN', 'the server is shutting down and takes no new requests; retry against another instance', {}, { retryAfter: 1 }));
      return;
    }
    if (request.headers.upgrade?.toLowerCase() !== 'websocket') {
      inflight.add(request);
      if (inflight.size >= sweepAt) clientsStillThere();
    }
    done();
  });
  app.addHook('onResponse', (request, _reply, done) => {
    inflight.delete(request);
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    inflight.delete(request);
    done();
  });
  return shutdown;
}
