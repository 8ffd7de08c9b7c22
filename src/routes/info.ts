import { availableParallelism, hostname, loadavg, userInfo } from 'node:os';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problems, V1_ERRORS } from '../schemas/common.js';
import { SCOPES } from '../schemas/constants.js';
import { Info, Whoami } from '../schemas/info.js';

function userName(uid: number): string {
  try {
    return userInfo().username;
  } catch {
    return String(uid);
  }
}

const infoRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/info',
    {
      config: { scope: 'info' },
      schema: {
        operationId: 'getInfo',
        tags: ['process info'],
        summary: "The server process, like Python's os.getpid(), os.getcwd(), os.getuid()…",
        response: { 200: Info, ...problems(...V1_ERRORS) },
      },
    },
    async () => {
      const { services } = app;
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      const uid = process.getuid!();
      const runAs = app.security.policy.defaultRunAs;
      return {
        pid: process.pid,
        ppid: process.ppid,
        cwd: process.cwd(),
        uid,
        gid: process.getgid!(),
        euid: process.geteuid!(),
        egid: process.getegid!(),
        groups: process.getgroups!(),
        user: userName(uid),
        hostname: hostname(),
        platform: process.platform,
        arch: process.arch,
        nodeVersion: process.version,
        startedAt: services.startedAt.toISOString(),
        uptimeMs: Date.now() - services.startedAt.getTime(),
        memory: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, heapTotalBytes: mem.heapTotal, externalBytes: mem.external },
        cpu: { userMs: Math.round(cpu.user / 1000), systemMs: Math.round(cpu.system / 1000), count: availableParallelism() },
        loadavg: loadavg(),
        spawner: services.runContext.spawner.name,
        instanceId: services.instanceId,
        node: services.config.nodeId,
        queue: {
          backend: services.config.queueBackend,
          role: services.config.role,
          node: services.config.queueBackend === 'redis' ? services.config.nodeId : null,
        },
        runAs: { uid: runAs.uid, gid: runAs.gid, user: runAs.name },
      };
    },
  );

  app.get(
    '/whoami',
    {
      config: { scope: SCOPES },
      schema: {
        operationId: 'whoami',
        tags: ['process info'],
        summary: "The calling token's id and scopes (any scope may ask), so that a client offers only what the token may do",
        response: { 200: Whoami, ...problems(...V1_ERRORS) },
      },
    },
    async (request) => {
      const principal = request.principal!;
      return { id: principal.id, scopes: SCOPES.filter((s) => principal.scopes.has(s)) };
    },
  );
};

export default infoRoutes;
