import { Option, type Command } from 'commander';
import { UsageError } from './exit.js';

/** The options that describe a command to run, shared by run, submit and explain. */
export interface SpecOptions {
  cwd?: string;
  env?: string[];
  timeout?: string;
  killGrace?: string;
  shell?: boolean;
  merge?: boolean;
  maxOutput?: string;
}

export function specOptions(cmd: Command, opts: { timeoutHelp: string }): Command {
  return cmd
    .option('--cwd <dir>', 'working directory on the server')
    .option('-e, --env <K=V>', 'set a variable (repeatable; -e K passes your own K)', collect)
    .option('--timeout <duration>', `${opts.timeoutHelp}: 30s, 500ms, 5m, 1h (bare number: seconds)`)
    .option('--kill-grace <duration>', 'from SIGTERM to SIGKILL at the timeout or a cancel')
    .option('--shell', 'run the arguments as one /bin/sh -c command line')
    .option('--merge', 'stderr into stdout, as 2>&1')
    .addOption(new Option('--max-output <bytes>', 'keep at most this many bytes per stream'));
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** A duration as milliseconds: 30s, 500ms, 5m, 1h, 1.5s; a bare number is seconds (as timeout(1)). */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${what} must be a duration such as 30s, 500ms, 5m or 1h (got ${JSON.stringify(text)})`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

/** The CommandSpec fields of these options and arguments (without stdin and encoding). */
export function specFrom(argv: string[], o: SpecOptions, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  if (argv.length === 0) throw new UsageError('no command given: execd run [options] -- program [args…]');
  const spec: Record<string, unknown> = o.shell ? { command: argv.join(' ') } : { argv };
  if (o.cwd !== undefined) spec.cwd = o.cwd;
  if (o.env && o.env.length > 0) spec.env = Object.fromEntries(o.env.map((kv) => envPair(kv, env)));
  if (o.timeout !== undefined) spec.timeoutMs = parseDuration(o.timeout, '--timeout');
  if (o.killGrace !== undefined) spec.killGraceMs = parseDuration(o.killGrace, '--kill-grace');
  if (o.merge) spec.stderr = 'merge';
  if (o.maxOutput !== undefined) {
    if (!/^\d+$/.test(o.maxOutput)) throw new UsageError(`--max-output must be a number of bytes (got ${JSON.stringify(o.maxOutput)})`);
    spec.maxOutputBytes = Number(o.maxOutput);
  }
  return spec;
}

function envPair(kv: string, env: NodeJS.ProcessEnv): [string, string] {
  const eq = kv.indexOf('=');
  if (eq > 0) return [kv.slice(0, eq), kv.slice(eq + 1)];
  if (eq === 0 || kv === '') throw new UsageError(`-e wants K=V or K (got ${JSON.stringify(kv)})`);
  const value = env[kv];
  if (value === undefined) throw new UsageError(`-e ${kv}: ${kv} is not set here (give -e ${kv}=value)`);
  return [kv, value];
}

/** All of stdin, for -i. */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The job-only options of submit: labels, retries, a delayed start, a completion callback (docs/jobs.md, docs/notify.md). */
export interface JobOptions {
  label?: string[];
  retry?: string;
  backoff?: string;
  backoffKind?: string;
  retryOn?: string;
  delay?: string;
  notBefore?: string;
  notify?: string;
}

const RETRY_ON = ['failed', 'timed_out', 'lost'];

export function jobOptions(cmd: Command): Command {
  return cmd
    .option('-l, --label <k=v>', 'a label to find the job by (repeatable): execd jobs -l k=v', collect)
    .option('--retry <attempts>', 'attempts in all, the first included (--retry 3: up to 2 retries)')
    .option('--backoff <duration>', 'with --retry: wait before the first retry (default 1s)')
    .addOption(new Option('--backoff-kind <kind>', 'with --retry: exponential doubles the wait each retry (default), fixed keeps it').choices(['exponential', 'fixed']))
    .option('--retry-on <states>', `with --retry: the outcomes retried, comma-separated (${RETRY_ON.join(',')}; default failed,timed_out)`)
    .option('--delay <duration>', 'scheduled: queued only after this long')
    .option('--not-before <time>', 'scheduled: queued only at this ISO 8601 time (2030-01-01T12:00:00Z)')
    .option('--notify <url>', "POST the Job to this URL when it ends (the server's EXECD_NOTIFY_ALLOW must list it)");
}

/** A `k=v` of --label: split at the first `=` (values may hold `=`); the server checks the rest. */
export function labelPair(kv: string, option = '--label'): [string, string] {
  const eq = kv.indexOf('=');
  if (eq <= 0) throw new UsageError(`${option} wants key=value (got ${JSON.stringify(kv)})`);
  return [kv.slice(0, eq), kv.slice(eq + 1)];
}

/** The JobRequest fields of these options. */
export function jobFields(o: JobOptions): Record<string, unknown> {
  const job: Record<string, unknown> = {};
  if (o.label && o.label.length > 0) {
    const pairs = o.label.map((kv) => labelPair(kv));
    const dup = pairs.find(([k], i) => pairs.findIndex(([other]) => other === k) !== i);
    if (dup) throw new UsageError(`--label ${dup[0]} is given twice`);
    job.labels = Object.fromEntries(pairs);
  }
  if (o.retry === undefined) {
    const stray = [o.backoff && '--backoff', o.backoffKind && '--backoff-kind', o.retryOn && '--retry-on'].find(Boolean);
    if (stray) throw new UsageError(`${stray} needs --retry N`);
  } else {
    if (!/^\d+$/.test(o.retry) || Number(o.retry) < 1) throw new UsageError(`--retry must be a number of attempts, 1 or more (got ${JSON.stringify(o.retry)})`);
    const retry: Record<string, unknown> = { attempts: Number(o.retry) };
    if (o.backoff !== undefined) retry.backoffMs = parseDuration(o.backoff, '--backoff');
    if (o.backoffKind !== undefined) retry.backoff = o.backoffKind;
    if (o.retryOn !== undefined) {
      const on = o.retryOn.split(',').map((s) => s.trim()).filter((s) => s !== '');
      const bad = on.find((s) => !RETRY_ON.includes(s));
      if (bad !== undefined || on.length === 0) throw new UsageError(`--retry-on takes ${RETRY_ON.join(', ')}, comma-separated (got ${JSON.stringify(o.retryOn)})`);
      retry.on = [...new Set(on)];
    }
    job.retry = retry;
  }
  if (o.delay !== undefined && o.notBefore !== undefined) throw new UsageError('give --delay or --not-before, not both');
  if (o.delay !== undefined) job.delayMs = parseDuration(o.delay, '--delay');
  if (o.notBefore !== undefined) {
    if (!/^\d{4}-\d{2}-\d{2}T/.test(o.notBefore) || Number.isNaN(Date.parse(o.notBefore))) {
      throw new UsageError(`--not-before must be an ISO 8601 time such as 2030-01-01T12:00:00Z (got ${JSON.stringify(o.notBefore)})`);
    }
    job.notBefore = o.notBefore;
  }
  if (o.notify !== undefined) job.notify = { url: o.notify };
  return job;
}
