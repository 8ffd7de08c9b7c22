import { z } from 'zod';
import { IsoTime } from './common.js';

export const Info = z
  .object({
    pid: z.int().meta({ description: 'os.getpid()' }),
    ppid: z.int().meta({ description: 'os.getppid()' }),
    cwd: z.string().meta({ description: 'os.getcwd()' }),
    uid: z.int().meta({ description: 'os.getuid()' }),
    gid: z.int().meta({ description: 'os.getgid()' }),
    euid: z.int().meta({ description: 'os.geteuid()' }),
    egid: z.int().meta({ description: 'os.getegid()' }),
    groups: z.array(z.int()).meta({ description: 'os.getgroups()' }),
    user: z.string().meta({ description: 'getpass.getuser()' }),
    hostname: z.string(),
    platform: z.string(),
    arch: z.string(),
    nodeVersion: z.string(),
    startedAt: IsoTime,
    uptimeMs: z.int(),
    memory: z.object({ rssBytes: z.int(), heapUsedBytes: z.int(), heapTotalBytes: z.int(), externalBytes: z.int() }),
    cpu: z.object({ userMs: z.int(), systemMs: z.int(), count: z.int() }),
    loadavg: z.array(z.number()).length(3),
    spawner: z.string().meta({ description: 'How children are spawned (child_process or a native spawner).' }),
    instanceId: z.string(),
    queue: z
      .object({
        backend: z.enum(['memory', 'redis']),
        role: z.enum(['all', 'api', 'worker']),
        node: z.string().nullable(),
      })
      .meta({ description: 'The job queue backend; with redis, this node\'s role and name in the cluster (docs/redis.md).' }),
    runAs: z
      .object({ uid: z.int(), gid: z.int(), user: z.string() })
      .meta({
        description:
          'Who commands run as: EXECD_RUN_AS, or the server itself. A policy rule with `runAs` overrides it for the commands it allows. ' +
          'Children get this uid and gid and no supplementary groups.',
      }),
  })
  .meta({ id: 'Info' });
export type Info = z.infer<typeof Info>;
