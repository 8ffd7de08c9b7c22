import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problems, V1_ERRORS } from '../schemas/common.js';
import { labelFilters } from '../schemas/jobs.js';
import { ErrorFrame, EventsQuery, frameSchema, JobEventFrame, LaggedFrame } from '../schemas/stream.js';
import { checkOrigin, CLOSE_CODES, needsUpgrade, UPGRADE_DESCRIPTION } from './stream.js';

const EVENTS_DESCRIPTION =
  "Lifecycle events of the token's own jobs (every job's with `admin`), " +
  'for dashboards, as JSON text frames (`x-websocket`): `queued` when a job is accepted, `started` when its process runs, ' +
  '`finished` when it reaches a terminal state (the Job, with `state` and `result`); `label=k=v` (repeatable, ANDed) narrows them to jobs with those labels. Events from the moment of connection on; GET /v1/jobs gives the ' +
  'state before. A viewer too slow for them has events dropped (its send buffer stays within EXECD_WS_MAX_BUFFER_BYTES) and, once it has caught up, ' +
  'a `lagged` frame with how many. A reload of EXECD_TOKENS_FILE (SIGHUP) that removes the token, or takes its jobs:read, closes the socket with 1008; ' +
  "one that takes admin narrows the events to the token's own jobs. " +
  UPGRADE_DESCRIPTION;

const eventRoutes: FastifyPluginAsyncZod = async (app) => {
  app.route({
    method: 'GET',
    url: '/events',
    config: { scope: 'jobs:read' },
    schema: {
      operationId: 'jobEvents',
      tags: ['jobs'],
      summary: "WebSocket: lifecycle events of the token's jobs (all jobs with admin): queued, started, finished",
      description: EVENTS_DESCRIPTION,
      querystring: EventsQuery,
      response: {
        101: z.null().meta({ description: 'Switching Protocols: the WebSocket is open (frames in `x-websocket`).' }),
        ...problems(...V1_ERRORS),
      },
      'x-websocket': {
        subprotocol: 'bearer.<token> (optional: the token, for browsers)',
        serverFrames: { oneOf: [JobEventFrame, LaggedFrame, ErrorFrame].map(frameSchema) },
        clientFrames: { description: 'None: any frame is answered with an error frame.' },
        closeCodes: { 1001: CLOSE_CODES[1001], 1008: CLOSE_CODES[1008], 1009: CLOSE_CODES[1009] },
      },
    },
    onRequest: checkOrigin(app.services.config.wsOrigins),
    handler: async () => needsUpgrade('GET /v1/events'),
    wsHandler: (socket, request) => app.viewers.openEventsViewer(socket, request.principal!, labelFilters(request.query.label)),
  });
};

export default eventRoutes;
