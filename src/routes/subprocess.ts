import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problems, V1_ERRORS } from '../schemas/common.js';
import {
  CallRequest,
  CallResponse,
  CheckOutputRequest,
  CheckOutputResponse,
  CompletedProcess,
  GetoutputRequest,
  GetoutputResponse,
  GetstatusoutputResponse,
  SubprocessRunRequest,
} from '../schemas/subprocess.js';
import * as subprocess from '../python/subprocess.js';
import { syncRunner } from './sync-run.js';

const ERRORS = problems(...V1_ERRORS, 422);

const PYTHON_ERRORS =
  ' Python exceptions are 422 problems whose `detail` is str(exception) and whose `exception` names its type: ' +
  'CalledProcessError (COMMAND_FAILED, with returncode, cmd, output, stderr), TimeoutExpired (TIMEOUT_EXPIRED, with cmd, ' +
  'timeout and the partial output as base64) and OSError subclasses such as FileNotFoundError (SPAWN_FAILED, with errno ' +
  'and filename). Output beyond EXECD_MAX_OUTPUT_BYTES is dropped and the header `X-Output-Truncated` names the stream.';

/** /v1/subprocess/*: CPython's subprocess functions, same names, same results. */
const subprocessRoutes: FastifyPluginAsyncZod = async (app) => {
  const context = (request: FastifyRequest, reply: FastifyReply): subprocess.SubprocessContext => ({
    run: syncRunner(app, request, reply),
    config: app.services.config,
  });
  const answer = <T>(reply: FastifyReply, a: subprocess.Answer<T>): T => {
    if (a.truncated.length > 0) reply.header('x-output-truncated', a.truncated.join(','));
    return a.body;
  };

  app.post(
    '/subprocess/getoutput',
    {
      config: { scope: 'run' },
      schema: {
        operationId: 'subprocessGetoutput',
        tags: ['subprocess'],
        summary: 'subprocess.getoutput(cmd): the output of a shell command',
        description: 'Runs `cmd` with /bin/sh -c, stderr merged into stdout, text mode; one trailing newline is stripped.' + PYTHON_ERRORS,
        body: GetoutputRequest,
        response: { 200: GetoutputResponse, ...ERRORS },
      },
    },
    async (request, reply) => {
      const a = await subprocess.getoutput(context(request, reply), request.body.cmd);
      request.log.info({ fn: 'getoutput' }, 'subprocess finished');
      return answer(reply, a);
    },
  );

  app.post(
    '/subprocess/getstatusoutput',
    {
      config: { scope: 'run' },
      schema: {
        operationId: 'subprocessGetstatusoutput',
        tags: ['subprocess'],
        summary: 'subprocess.getstatusoutput(cmd): exit status and output of a shell command',
        description:
          'As getoutput, plus `status`: the exit status, or minus the signal number when a signal ended the shell (Python 3.11).' +
          PYTHON_ERRORS,
        body: GetoutputRequest,
        response: { 200: GetstatusoutputResponse, ...ERRORS },
      },
    },
    async (request, reply) => {
      const a = await subprocess.getstatusoutput(context(request, reply), request.body.cmd);
      request.log.info({ fn: 'getstatusoutput', status: a.body.status }, 'subprocess finished');
      return answer(reply, a);
    },
  );

  app.post(
    '/subprocess/check_output',
    {
      config: { scope: 'run' },
      schema: {
        operationId: 'subprocessCheckOutput',
        tags: ['subprocess'],
        summary: 'subprocess.check_output(args, ...): stdout, or CalledProcessError on a non-zero status',
        description: 'The output is text with `text`, else base64. A non-zero returncode is 422 COMMAND_FAILED.' + PYTHON_ERRORS,
        body: CheckOutputRequest,
        response: { 200: CheckOutputResponse, ...ERRORS },
      },
    },
    async (request, reply) => {
      const a = await subprocess.checkOutput(context(request, reply), request.body);
      request.log.info({ fn: 'check_output' }, 'subprocess finished');
      return answer(reply, a);
    },
  );

  app.post(
    '/subprocess/call',
    {
      config: { scope: 'run' },
      schema: {
        operationId: 'subprocessCall',
        tags: ['subprocess'],
        summary: 'subprocess.call(args, ...): the returncode',
        description: 'stdout and stderr are discarded (Python would pass them to its own).' + PYTHON_ERRORS,
        body: CallRequest,
        response: { 200: CallResponse, ...ERRORS },
      },
    },
    async (request, reply) => {
      const a = await subprocess.call(context(request, reply), request.body);
      request.log.info({ fn: 'call', returncode: a.body.returncode }, 'subprocess finished');
      return answer(reply, a);
    },
  );

  app.post(
    '/subprocess/run',
    {
      config: { scope: 'run' },
      schema: {
        operationId: 'subprocessRun',
        tags: ['subprocess'],
        summary: 'subprocess.run(args, ...): a CompletedProcess',
        description:
          'stdout and stderr are null unless `capture_output`; captured, they are text with `text`, else base64. ' +
          '`check` turns a non-zero returncode into 422 COMMAND_FAILED.' +
          PYTHON_ERRORS,
        body: SubprocessRunRequest,
        response: { 200: CompletedProcess, ...ERRORS },
      },
    },
    async (request, reply) => {
      const a = await subprocess.run(context(request, reply), request.body);
      request.log.info({ fn: 'run', returncode: a.body.returncode }, 'subprocess finished');
      return answer(reply, a);
    },
  );
};

export default subprocessRoutes;
