import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ApiError } from '../errors.js';
import { problems, V1_ERRORS } from '../schemas/common.js';
import { Process, ProcessList, ProcessListQuery, ProcessParams } from '../schemas/processes.js';
import { listProcesses, readProcess, type ProcInfo } from '../services/proc.js';
import type { RunTracker } from '../services/tracker.js';

/** The API view of a process: its /proc facts plus what execd knows about its group. */
function toProcess(p: ProcInfo, tracker: RunTracker): Process {
  const run = tracker.byPgid(p.pgid);
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
    jobId: run?.jobId ?? null,
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
          '`execd` marks those execd started; `jobId` names their job.',
        querystring: ProcessListQuery,
        response: { 200: ProcessList, ...problems(...V1_ERRORS) },
      },
    },
    async (request) => {
      const { user, execd, pgid } = request.query;
      const { tracker } = app.services;
      const items = (await listProcesses())
        .filter((p) => (user === undefined || p.uid === user) && (pgid === undefined || p.pgid === pgid))
        .map((p) => toProcess(p, tracker))
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
      return toProcess(found, app.services.tracker);
    },
  );
};

export default processRoutes;
