import type { Command } from 'commander';
import type { Job, JobState } from '../../client/index.js';
import { UsageError } from '../exit.js';
import { commandLine, fields, print, printJson, printerFor, size, state, table, type Printer } from '../output.js';
import { clientFrom, optionsOf, type CommonOptions } from '../settings.js';

const STATES = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'canceled', 'lost'];

const exitColumn = (job: Job): string => {
  const r = job.result;
  if (!r) return job.error ? job.error.code : '';
  return r.timedOut ? 'timeout' : r.signal ?? String(r.exitCode);
};

const jobRow = (p: Printer, job: Job): string[] => [
  job.id, state(p, job.state), job.queue, job.createdAt.replace('T', ' ').slice(0, 19), exitColumn(job), commandLine(job.spec),
];

export function registerJobs(program: Command): Command {
  return program
    .command('jobs')
    .description('list jobs')
    .option('-s, --state <state>', `only jobs in this state (${STATES.join(', ')})`)
    .option('-q, --queue <name>', 'only jobs of this queue')
    .option('-n, --limit <n>', 'at most n jobs (1-1000, default 100)')
    .option('--cursor <cursor>', 'the next page (the nextCursor of --json)')
    .action(async (_o, self: Command) => {
      type JobsOptions = CommonOptions & { state?: string; queue?: string; limit?: string; cursor?: string };
      const o = optionsOf<JobsOptions>(self);
      if (o.state !== undefined && !STATES.includes(o.state)) throw new UsageError(`--state must be one of ${STATES.join(', ')}`);
      if (o.limit !== undefined && !/^\d+$/.test(o.limit)) throw new UsageError('--limit must be a number');
      const p = printerFor(o);
      const list = await clientFrom(o).jobs.list({
        state: o.state as JobState | undefined,
        queue: o.queue,
        limit: o.limit === undefined ? undefined : Number(o.limit),
        cursor: o.cursor,
      });
      if (p.json) return printJson(list);
      print(table(p, ['ID', 'STATE', 'QUEUE', 'CREATED', 'EXIT', 'COMMAND'], list.items.map((j) => jobRow(p, j))));
      if (list.nextCursor !== null && process.stderr.isTTY) {
        process.stderr.write(`(more: execd jobs --cursor ${list.nextCursor})\n`);
      }
    });
}

export function showJob(p: Printer, job: Job): string {
  const r = job.result;
  return fields(p, [
    ['id', job.id],
    ['state', state(p, job.state)],
    ['queue', job.queue],
    ['command', commandLine(job.spec, 1000)],
    ['cwd', job.spec.cwd],
    ['created', job.createdAt],
    ['started', job.startedAt],
    ['finished', job.finishedAt],
    ['position', job.position],
    ['pid', job.pid],
    ['exit code', r?.exitCode],
    ['signal', r?.signal],
    ['timed out', r?.timedOut],
    ['duration', r ? `${r.durationMs} ms` : null],
    ['stdout', `${size(job.outputBytes.stdout)} bytes${r?.truncated.stdout ? ` (truncated: ${r.truncatedReason.stdout})` : ''}`],
    ['stderr', `${size(job.outputBytes.stderr)} bytes${r?.truncated.stderr ? ` (truncated: ${r.truncatedReason.stderr})` : ''}`],
    ['error', job.error ? `${job.error.code}: ${job.error.message}` : null],
  ]);
}

export function registerShow(program: Command): Command {
  return program
    .command('show')
    .description("a job's state, command, exit status and output sizes")
    .argument('<id>', 'the job id')
    .action(async (id: string, _o, self: Command) => {
      const o = optionsOf<CommonOptions>(self);
      const p = printerFor(o);
      const job = await clientFrom(o).jobs.get(id);
      if (p.json) printJson(job);
      else print(showJob(p, job));
    });
}

export function registerCancel(program: Command): Command {
  return program
    .command('cancel')
    .description('cancel a job (running: SIGTERM, then SIGKILL after the grace)')
    .argument('<id>', 'the job id')
    .action(async (id: string, _o, self: Command) => {
      const o = optionsOf<CommonOptions>(self);
      const p = printerFor(o);
      const job = await clientFrom(o).jobs.cancel(id);
      if (p.json) printJson(job);
      else print(`${job.id} ${state(p, job.state)}`);
    });
}

export function registerSignal(program: Command): Command {
  return program
    .command('signal')
    .description("signal a running job's process group")
    .argument('<id>', 'the job id')
    .argument('<signal>', 'a signal name: SIGINT, INT, SIGUSR1…')
    .action(async (id: string, signal: string, _o, self: Command) => {
      const o = optionsOf<CommonOptions>(self);
      const name = signal.toUpperCase().startsWith('SIG') ? signal.toUpperCase() : `SIG${signal.toUpperCase()}`;
      await clientFrom(o).jobs.signal(id, name);
      if (printerFor(o).json) printJson({ id, signal: name });
    });
}

export function registerRm(program: Command): Command {
  return program
    .command('rm')
    .description('forget finished jobs and their output')
    .argument('<ids...>', 'job ids')
    .action(async (ids: string[], _o, self: Command) => {
      const o = optionsOf<CommonOptions>(self);
      const client = clientFrom(o);
      for (const id of ids) await client.jobs.remove(id);
      if (printerFor(o).json) printJson({ removed: ids });
    });
}

export function registerQueues(program: Command): Command {
  return program
    .command('queues')
    .description('the queues: workers, running, queued, capacity')
    .action(async (_o, self: Command) => {
      const o = optionsOf<CommonOptions>(self);
      const p = printerFor(o);
      const queues = await clientFrom(o).queues();
      if (p.json) return printJson(queues);
      const rows = queues.map((q) => [q.name, q.concurrency, q.running, q.queued, q.capacity, q.processed, q.failed].map(String));
      print(table(p, ['QUEUE', 'WORKERS', 'RUNNING', 'QUEUED', 'CAPACITY', 'PROCESSED', 'FAILED'], rows));
    });
}
