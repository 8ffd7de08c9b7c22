import { z } from 'zod';
import { IsoTime } from './common.js';
import { SCOPES } from './constants.js';

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
    node: z.string().meta({
      description: "This node's id (EXECD_NODE_ID, default <hostname>-<pid>): what a Job's `node` (which node accepted it) and `attempts[].node` (which ran it) name.",
    }),
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

export const Whoami = z
  .object({
    id: z.string().meta({ description: 'The token\'s id (EXECD_TOKENS_FILE), or "env", "env-2"… for EXECD_TOKEN\'s tokens.' }),
    scopes: z.array(z.enum(SCOPES)).meta({ description: 'What the token may do (docs/security.md, "Scopes"); `admin` includes every other.' }),
  })
  .meta({ id: 'Whoami', description: 'The token of this request: its id and scopes (never the token itself).' });
export type Whoami = z.infer<typeof Whoami>;
