import type { Command } from 'commander';
import type { JobRequest } from '../../client/index.js';
import { attach } from '../attach.js';
import { print, printJson, printerFor } from '../output.js';
import { clientFrom, optionsOf, type CommonOptions } from '../settings.js';
import { jobFields, jobOptions, readStdin, specFrom, specOptions, type JobOptions, type SpecOptions } from '../spec.js';

interface SubmitOptions extends CommonOptions, SpecOptions, JobOptions {
  queue?: string;
  key?: string;
  interactive?: boolean;
  follow?: boolean;
  sigProxy?: boolean;
}

export function registerSubmit(program: Command): Command {
  const cmd = program
    .command('submit')
    .description('submit a job and print its id; --follow tails it and exits with its status')
    .argument('<argv...>', 'the program and its arguments (options of execd go before it)')
    .option('-q, --queue <name>', 'the queue (default: "default")')
    .option('-k, --key <key>', 'idempotency key: the same key and command, the same job')
    .option('-i, --interactive', 'send your stdin (read to its end first)')
    .option('-f, --follow', 'tail it and exit with its status; Ctrl-C detaches, the job runs on')
    .option('--sig-proxy', 'with --follow: Ctrl-C and SIGTERM go to the job instead')
    .passThroughOptions();
  specOptions(cmd, { timeoutHelp: 'timeout (0: none; default EXECD_JOB_TIMEOUT_MS)' });
  jobOptions(cmd);
  return cmd.action(async (argv: string[], _o: SubmitOptions, self: Command) => {
    const o = optionsOf<SubmitOptions>(self);
    const client = clientFrom(o);
    const p = printerFor(o);
    const spec = { ...specFrom(argv, o), ...jobFields(o) } as JobRequest;
    if (o.queue !== undefined) spec.queue = o.queue;
    if (o.interactive) Object.assign(spec, { stdin: (await readStdin()).toString('base64'), stdinEncoding: 'base64' });
    const job = await client.jobs.submit(spec, { idempotencyKey: o.key });
    if (!o.follow) {
      if (p.json) printJson(job);
      else print(job.id);
      return;
    }
    if (p.json) printJson(job);
    else if (process.stderr.isTTY) process.stderr.write(`execd: job ${job.id}\n`);
    process.exitCode = await attach(client, job.id, { sigProxy: o.sigProxy, printer: p });
  });
}
