import type { Command } from 'commander';
import type { Job, JobAttempt, JobState } from '../../client/index.js';
import { JOB_STATES } from '../../schemas/constants.js';
import { UsageError } from '../exit.js';
import { commandLine, fields, paint, print, printJson, printerFor, size, state, table, type Printer } from '../output.js';
import { clientFrom, optionsOf, type CommonOptions } from '../settings.js';
import { labelPair } from '../spec.js';

const STATES: readonly string[] = JOB_STATES;
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** `team=web build=1234`. */
const labelsText = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');

/** The state, and `n/m` while a job may have (or had) more than one attempt. */
const stateCell = (p: Printer, job: Job): string => state(p, job.state) + (job.maxAttempts > 1 ? ` ${job.attempt}/${job.maxAttempts}` : '');

const exitColumn = (job: Job): string => {
  const r = job.result;
  if (!r) return job.error ? job.error.code : '';
  return r.timedOut ? 'timeout' : r.signal ?? String(r.exitCode);
};

const time = (iso: string): string => iso.replace('T', ' ').slice(0, 19);

const jobRow = (p: Printer, job: Job, withLabels: boolean): string[] => [
  job.id, stateCell(p, job), job.queue, time(job.createdAt), exitColumn(job),
  ...(withLabels ? [labelsText(job.labels)] : []), commandLine(job.spec),
];

export function registerJobs(program: Command): Command {
  return program
    .command('jobs')
    .description('list jobs')
    .option('-s, --state <state>', `only jobs in this state (${STATES.join(', ')})`)
    .option('-q, --queue <name>', 'only jobs of this queue')
    .option('-l, --label <k=v>', 'only jobs with this label (repeatable: all must match)', collect)
    .option('-n, --limit <n>', 'at most n jobs (1-1000, default 100)')
    .option('--cursor <cursor>', 'the next page (the nextCursor of --json)')
    .action(async (_o, self: Command) => {
      type JobsOptions = CommonOptions & { state?: string; queue?: string; limit?: string; cursor?: string; label?: string[] };
      const o = optionsOf<JobsOptions>(self);
      if (o.state !== undefined && !STATES.includes(o.state)) throw new UsageError(`--state must be one of ${STATES.join(', ')}`);
      if (o.limit !== undefined && !/^\d+$/.test(o.limit)) throw new UsageError('--limit must be a number');
      for (const kv of o.label ?? []) labelPair(kv);
      const p = printerFor(o);
      const list = await clientFrom(o).jobs.list({
        state: o.state as JobState | undefined,
        queue: o.queue,
        limit: o.limit === undefined ? undefined : Number(o.limit),
        cursor: o.cursor,
        label: o.label,
      });
      if (p.json) return printJson(list);
      // LABELS only when a job listed has any: a plain list reads as before.
      const withLabels = list.items.some((j) => Object.keys(j.labels ?? {}).length > 0);
      const headers = ['ID', 'STATE', 'QUEUE', 'CREATED', 'EXIT', ...(withLabels ? ['LABELS'] : []), 'COMMAND'];
      print(table(p, headers, list.items.map((j) => jobRow(p, j, withLabels))));
      if (list.nextCursor !== null && process.stderr.isTTY) {
        process.stderr.write(`(more: execd jobs --cursor ${list.nextCursor})\n`);
      }
    });
}

const attemptExit = (a: JobAttempt): string => {
  if (a.result) return a.result.timedOut ? 'timeout' : a.result.signal ?? String(a.result.exitCode);
  return a.error ? a.error.code : '';
};

/** One row per attempt: where it ran, how it ended, where its output begins in each stream. */
function attemptsTable(p: Printer, job: Job): string {
  const rows = job.attempts.map((a) => [
    String(a.attempt), a.node, a.host, state(p, a.state), attemptExit(a), time(a.startedAt), a.finishedAt ? time(a.finishedAt) : '-',
    String(a.output.stdout), String(a.output.stderr),
  ]);
  return table(p, ['#', 'NODE', 'HOST', 'STATE', 'EXIT', 'STARTED', 'FINISHED', 'STDOUT@', 'STDERR@'], rows);
}

function notifyText(job: Job): string | null {
  const n = job.notify;
  if (!n) return null;
  const how = [`${n.attempts} ${n.attempts === 1 ? 'try' : 'tries'}`];
  if (n.lastStatus !== null) how.push(`last HTTP ${n.lastStatus}`);
  if (n.lastError) how.push(n.lastError);
  if (n.deliveredAt) how.push(`at ${n.deliveredAt}`);
  return `${n.state} ${n.url} (${how.join(', ')})`;
}

export function showJob(p: Printer, job: Job): string {
  const r = job.result;
  const retry = job.spec.retry;
  const main = fields(p, [
    ['id', job.id],
    ['state', state(p, job.state)],
    ['queue', job.queue],
    ['labels', Object.keys(job.labels ?? {}).length > 0 ? labelsText(job.labels) : null],
    ['node', job.node],
    ['attempt', `${job.attempt}/${job.maxAttempts}`],
    ['retry', retry ? `${retry.backoff ?? 'exponential'} backoff from ${retry.backoffMs ?? 1000} ms, on ${(retry.on ?? ['failed', 'timed_out']).join(', ')}` : null],
    ['run at', job.runAt],
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
    ['notify', notifyText(job)],
  ]);
  if (job.attempts.length === 0) return main;
  return `${main}\n\n${paint(p, 'dim', 'attempts')}\n${attemptsTable(p, job)}`;
}

export function registerShow(program: Command): Command {
  return program
    .command('show')
    .description("a job's state, labels, node, command, exit status, output sizes, each attempt and its callback")
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
    .description('cancel a job and its retries (scheduled or queued: at once; running: SIGTERM, then SIGKILL after the grace)')
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
