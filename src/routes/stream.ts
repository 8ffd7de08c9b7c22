import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ApiError } from '../errors.js';
import { problems, V1_ERRORS } from '../schemas/common.js';
import { JobIdParams } from '../schemas/jobs.js';
import {
  ClientFrame,
  ErrorFrame,
  ExitFrame,
  frameSchema,
  GapFrame,
  OutputFrame,
  StateFrame,
  StreamQuery,
  BINARY_OUTPUT_FRAME,
} from '../schemas/stream.js';
import { mustSee, notFound } from './job-output.js';
import { MAX_CLIENT_FRAME_BYTES } from '../stream/hub.js';
import { originAllowed, originRefusal } from '../plugins/origin.js';

const TAGS = ['jobs'];

/** The closes a client may see, shared by both WebSocket endpoints' documentation. */
export const CLOSE_CODES = {
  1000: 'the job ended (after the exit frame)',
  1001: 'the server is shutting down, or the job was removed (an error frame says which)',
  1008: 'too many invalid frames, or the token was revoked or lost a scope the connection needs (a tokens reload; an error frame says which)',
  1009: `a client frame over ${MAX_CLIENT_FRAME_BYTES} bytes`,
  1011: 'an internal error',
};

/** Refused before the upgrade, like any request: 403 for a browser Origin other than execd's own and those of EXECD_WS_ORIGINS. */
export function checkOrigin(allowed: readonly string[]) {
  return async (request: FastifyRequest): Promise<void> => {
    const origin = request.headers.origin;
    if (!originAllowed(origin, allowed, request.headers.host)) {
      throw new ApiError('FORBIDDEN', originRefusal(origin));
    }
  };
}

/** The answer to a plain GET (no Upgrade) of a WebSocket endpoint. */
export function needsUpgrade(path: string): never {
  throw new ApiError('VALIDATION_FAILED', `${path} is a WebSocket endpoint: send a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket); see docs/websocket.md`);
}

export const UPGRADE_DESCRIPTION =
  'Authorization: `Authorization: Bearer <token>`, or (browsers) the subprotocol `bearer.<token>`, echoed as the accepted subprotocol. ' +
  'A browser Origin must be execd\'s own (a page it serves, such as /docs) or one of EXECD_WS_ORIGINS (a request without Origin is not a browser and passes). Every refusal (401, 403, 404, 400 for a bad query) ' +
  'is an HTTP problem+json answer before any WebSocket exists; a GET without Upgrade is a 400. ' +
  `Client frames are JSON text of at most ${MAX_CLIENT_FRAME_BYTES} bytes; the server pings every EXECD_WS_PING_MS and cuts a client that answers nothing for a whole interval. ` +
  'Frames and close codes: `x-websocket`.';

const STREAM_DESCRIPTION =
  "A job's output, live, as frames (`x-websocket`): first everything still kept from `offset` in each stream (the replay), " +
  'then output as the job writes it, `state` frames on each change, and last an `exit` frame, then close 1000. Output frames are JSON text ' +
  '(encoding utf8 or base64) or, with encoding=binary, binary frames: byte 0 the stream (1 stdout, 2 stderr), bytes 1..8 the offset of the first ' +
  'data byte (unsigned 64-bit big-endian), then the raw bytes; the other frames stay JSON text. ' +
  'Offsets are the byte offsets of GET /v1/jobs/{id}/output: a client that reconnects with `stdoutOffset`/`stderrOffset` set to the end of what it got ' +
  'misses nothing and sees nothing twice. Every byte the job\'s output log holds is delivered, in order, exactly once: a viewer whose send buffer ' +
  '(EXECD_WS_MAX_BUFFER_BYTES) is full pauses and, once it has drained, resumes from the log at its own offset; the job never waits for a viewer. ' +
  'Output frames are large (up to 1 MiB binary, 256 KiB text) while a viewer catches up, and each chunk goes at once when output trickles. ' +
  'A `gap` frame means bytes this connection will not get: not held (past maxOutputBytes, a full disk, or removed by DELETE or retention), or, ' +
  'with lag=skip, skipped because the viewer was too slow for the live output (it jumps to the live edge; the bytes stay readable from /output). ' +
  'With the scope jobs:write, `stdin` frames write to a job created with "stdin": {"stream": true} and `signal` frames signal it; a refused frame gets an ' +
  '`error` frame and the connection stays open. The token is checked again on every reload of EXECD_TOKENS_FILE (SIGHUP): a removed token, or one ' +
  'that lost jobs:read (or admin, for another token\'s job), is closed with 1008; jobs:write is checked on each stdin and signal frame. `offset` applies to each stream (one shorter than it has nothing to replay; one still written waits for ' +
  'those bytes); `stdoutOffset`/`stderrOffset` name one stream\'s resume point, and one past the end of a finished stream is a 400 (with `end`). ' +
  UPGRADE_DESCRIPTION;

const streamRoutes: FastifyPluginAsyncZod = async (app) => {
  const { jobs, config } = app.services;

  app.route({
    method: 'GET',
    url: '/jobs/:id/stream',
    config: { scope: 'jobs:read' },
    schema: {
      operationId: 'streamJob',
      tags: TAGS,
      summary: "WebSocket: a job's output from an offset, live, with state changes and the exit; stdin and signals the other way",
      description: STREAM_DESCRIPTION,
      params: JobIdParams,
      querystring: StreamQuery,
      response: {
        101: z.null().meta({ description: 'Switching Protocols: the WebSocket is open (frames in `x-websocket`).' }),
        ...problems(...V1_ERRORS, 404),
      },
      'x-websocket': {
        subprotocol: 'bearer.<token> (optional: the token, for browsers)',
        serverFrames: { oneOf: [OutputFrame, StateFrame, GapFrame, ExitFrame, ErrorFrame].map(frameSchema) },
        binaryServerFrames: BINARY_OUTPUT_FRAME,
        clientFrames: { oneOf: ClientFrame.options.map(frameSchema) },
        closeCodes: CLOSE_CODES,
      },
    },
    onRequest: checkOrigin(config.wsOrigins),
    preHandler: async (request) => {
      const { id } = request.params;
      await mustSee(jobs, request, id); // another token's job is a 404, as over HTTP
      const [job, output] = await Promise.all([jobs.get(id), jobs.output(id)]);
      if (!job || !output) throw notFound(id);
      // A stream's own offset past the end of its finished stream is a mistake; the shared `offset` past a short
      // stream is only nothing to replay.
      const exact = { stdout: request.query.stdoutOffset, stderr: request.query.stderrOffset };
      for (const stream of ['stdout', 'stderr'] as const) {
        const end = output.end(stream);
        const offset = exact[stream];
        if (offset !== undefined && offset > end && output.closed(stream)) {
          const message = `${stream}Offset ${offset} is past the end of ${stream} (${end} bytes)`;
          throw new ApiError('VALIDATION_FAILED', message, { end, stream, errors: [{ in: 'querystring', path: `/${stream}Offset`, message }] });
        }
      }
    },
    handler: async () => needsUpgrade('GET /v1/jobs/{id}/stream'),
    wsHandler: (socket, request) => {
      app.viewers.openJobViewer(socket, {
        jobId: request.params.id,
        encoding: request.query.encoding ?? 'utf8',
        lag: request.query.lag ?? 'wait',
        offsets: offsetsOf(request.query),
        principal: request.principal!, // authenticated by the onRequest hook of /v1
      });
    },
  });
};

function offsetsOf(query: StreamQuery): { stdout: number; stderr: number } {
  const offset = query.offset ?? 0;
  return { stdout: query.stdoutOffset ?? offset, stderr: query.stderrOffset ?? offset };
}

export default streamRoutes;
