import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ApiError } from '../errors.js';
import { problems, V1_ERRORS } from '../schemas/common.js';
import { RunRequest, RunResult } from '../schemas/run.js';
import { encodeBytes } from '../spec/encoding.js';
import { calledProcessErrorStr } from '../python/exceptions.js';
import { pyStr } from '../python/pyrepr.js';
import { capturedOutput, runStatus } from '../runner/status.js';
import { toRunSpec } from '../spec/run-spec.js';
import type { SyncRun } from '../services/sync.js';
import { syncRunner } from './sync-run.js';
import type { Encoding } from '../schemas/common.js';

/** A sync run's answer: its status (the shape jobs keep, runner/status.ts) and its output. */
export function toRunResult(run: SyncRun, encoding: Encoding): RunResult {
  const status = runStatus(run.outcome, run.returncode, capturedOutput(run.truncated), run);
  return Object.assign(status, { stdout: encodeBytes(run.stdout, encoding), stderr: encodeBytes(run.stderr, encoding), encoding });
}

const wantsText = (accept: string | undefined): boolean => {
  if (!accept) return false;
  const types = accept.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase());
  const text = types.indexOf('text/plain');
  const json = types.findIndex((t) => t === 'application/json' || t === '*/*');
  return text >= 0 && (json < 0 || text < json);
};

/**
 * toRunResult builds the answer in exactly RunResult's shape (test/e2e/run.test.ts
 * checks answers against the schema strictly), so it is serialized with
 * JSON.stringify rather than re-validated through zod on every run, as the job
 * routes do. The schema still documents the answer.
 */
const plainJson = { serializerCompiler: () => (data: unknown) => JSON.stringify(data) };

const runRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/run',
    {
      ...plainJson,
      schema: {
        operationId: 'run',
        tags: ['run'],
        summary: 'Run a command and answer with its exit status and output',
        description:
          'Like subprocess.run(). With `Accept: text/plain` the body is the raw stdout and the headers ' +
          '`X-Exit-Code`, `X-Signal` and `X-Returncode` carry the status.',
        body: RunRequest,
        response: { 200: RunResult, ...problems(...V1_ERRORS, 422) },
      },
      config: { scope: 'run' },
    },
    async (request, reply) => {
      const { config } = app.services;
      const body = request.body;
      const spec = toRunSpec(body, config, { timeoutMs: config.syncTimeoutMs, allowStreamStdin: false });
      const run = await syncRunner(app, request, reply)(spec);
      const encoding = body.encoding ?? 'utf8';
      const result = toRunResult(run, encoding);
      const cmd = body.argv ?? body.command!;
      request.log.debug({ argv: body.argv, command: body.command, returncode: run.returncode, timedOut: result.timedOut, durationMs: result.durationMs }, 'run finished');
      if (body.check && result.timedOut) {
        throw new ApiError('TIMEOUT_EXPIRED', `Command '${pyStr(cmd)}' timed out after ${spec.timeoutMs! / 1000} seconds`, { result });
      }
      if (body.check && run.returncode !== 0) {
        throw new ApiError('COMMAND_FAILED', calledProcessErrorStr(cmd, run.returncode), { result });
      }
      if (wantsText(request.headers.accept)) {
        return reply
          .header('x-exit-code', result.exitCode === null ? '' : String(result.exitCode))
          .header('x-signal', result.signal ?? '')
          .header('x-returncode', String(result.returncode))
          .header('x-timed-out', String(result.timedOut))
          .type(encoding === 'base64' ? 'application/octet-stream' : 'text/plain; charset=utf-8')
          .send(run.stdout as never);
      }
      return result;
    },
  );
};

export default runRoutes;
