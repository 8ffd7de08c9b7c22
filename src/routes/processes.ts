import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ApiError } from '../errors.js';
import { problems, V1_ERRORS } from '../schemas/common.js';
import { Process, ProcessList, ProcessListQuery, ProcessParams } from '../schemas/processes.js';
import { canSee, type Principal } from '../security/auth.js';
import { listProcesses, readProcess, type ProcInfo } from '../ops/proc.js';
import type { RunTracker } from '../ops/tracker.js';

/**
 * The API view of a process: its /proc facts plus what execd knows about its group.
 * `jobId` is named only to a token that can see the job (its owner, or admin); `execd` is always said.
 */
function toProcess(p: ProcInfo, tracker: RunTracker, viewer: Principal): Process {
  const run = tracker.byPgid(p.pgid);
  const jobId = run?.jobId !== undefined && canSee(viewer, run.ownerId) ? run.jobId : null;
  return {
    pid: p.pid,
    ppid: p.ppid,
    pgid: p.pgid,
    uid: p.uid,
    gid: p.gid,
    state: p.state,
    name: p.name,
    argv: p.argv,
    rssBytes: p.rssBytes,
    cpuMs: p.cpuMs,
    startedAt: p.startedAt.toISOString(),
    execd: run !== undefined,
    jobId,
  };
}

const processRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/processes',
    {
      config: { scope: 'processes' },
      schema: {
        operationId: 'listProcesses',
        tags: ['process info'],
        summary: 'The processes of the host, like ps -e, read from /proc',
        description:
          'Sorted by pid. Processes that exit while the list is read are left out. ' +
          '`execd` marks those execd started; `jobId` names their job when the token can see it (its own jobs; every job with `admin`), else null.',
        querystring: ProcessListQuery,
        response: { 200: ProcessList, ...problems(...V1_ERRORS) },
      },
    },
    async (request) => {
      const { user, execd, pgid } = request.query;
      const { tracker } = app.services;
      const items = (await listProcesses())
        .filter((p) => (user === undefined || p.uid === user) && (pgid === undefined || p.pgid === pgid))
        .map((p) => toProcess(p, tracker, request.principal!))
        .filter((p) => execd === undefined || p.execd === execd);
      return { items };
    },
  );

  app.get(
    '/processes/:pid',
    {
      config: { scope: 'processes' },
      schema: {
        operationId: 'getProcess',
        tags: ['process info'],
        summary: 'One process of the host, read from /proc',
        params: ProcessParams,
        response: { 200: Process, ...problems(...V1_ERRORS, 404) },
      },
    },
    async (request) => {
      const { pid } = request.params;
      const found = await readProcess(pid);
      if (!found) throw new ApiError('NOT_FOUND', `no process with pid ${pid}`);
      return toProcess(found, app.services.tracker, request.principal!);
    },
  );
};

export default processRoutes;
