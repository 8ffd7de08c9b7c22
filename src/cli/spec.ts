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
