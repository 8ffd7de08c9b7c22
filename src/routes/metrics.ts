import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problems, V1_ERRORS } from '../schemas/common.js';
import type { Metrics } from '../ops/metrics.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** This app's Prometheus metrics (GET /metrics). */
    metrics: Metrics;
  }
}

const DESCRIPTION =
  'Prometheus text exposition format 0.0.4. Needs a bearer token (scope `info`), like /v1. ' +
  'execd_jobs{queue,state} (queued, running), execd_jobs_finished_total{queue,state}, execd_queue_depth{queue}, ' +
  'execd_queue_capacity{queue}, execd_workers{queue}, execd_workers_running{queue}, execd_run_duration_seconds{kind} ' +
  '(histogram; kind sync or job), execd_spawn_failures_total{kind,errno}, execd_job_output_bytes_total{queue,stream}, ' +
  'execd_process_groups{kind}, execd_ws_viewers{endpoint}, execd_ws_viewers_opened_total, execd_ws_gaps_total, ' +
  'execd_ws_gap_bytes_total, execd_ws_events_dropped_total, execd_ws_dead_viewers_total, execd_requests_shed_total, ' +
  'execd_recovered_processes_total, execd_draining; and the process metrics of prom-client (process_*, nodejs_*, ' +
  'nodejs_eventloop_lag_seconds among them). Answered while the server drains. See docs/operations.md.';

const metricsRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/metrics',
    {
      config: { scope: 'info', duringDrain: true },
      schema: {
        operationId: 'metrics',
        tags: ['operations'],
        summary: 'Prometheus metrics (text format); needs a token like /v1',
        description: DESCRIPTION,
        response: {
          200: {
            description: 'The metrics, as Prometheus text.',
            content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: z.string() } },
          },
          ...problems(...V1_ERRORS),
        },
      },
    },
    async (_request, reply) => {
      const text = await app.metrics.text();
      return reply.type(app.metrics.contentType).header('cache-control', 'no-store').send(text);
    },
  );
};

export default metricsRoutes;
