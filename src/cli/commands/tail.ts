import { Option, type Command } from 'commander';
import type { StreamName } from '../../client/index.js';
import { attach } from '../attach.js';
import { UsageError } from '../exit.js';
import { printerFor } from '../output.js';
import { clientFrom, optionsOf, type CommonOptions } from '../settings.js';

interface TailOptions extends CommonOptions {
  offset?: string;
  stdoutOffset?: string;
  stderrOffset?: string;
  stdout?: boolean;
  stderr?: boolean;
  sigProxy?: boolean;
}

const offset = (text: string | undefined, what: string): number | undefined => {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} must be a byte offset (got ${JSON.stringify(text)})`);
  return Number(text);
};

export function registerTail(program: Command): Command {
  return program
    .command('tail')
    .description("follow a job's output to its end and exit with its status (Ctrl-C detaches)")
    .argument('<id>', 'the job id')
    .option('--offset <n>', 'start both streams at byte n')
    .option('--stdout-offset <n>', 'start stdout at byte n (overrides --offset)')
    .option('--stderr-offset <n>', 'start stderr at byte n (overrides --offset)')
    .addOption(new Option('--stdout', 'only stdout').conflicts('stderr'))
    .option('--stderr', 'only stderr')
    .option('--sig-proxy', 'Ctrl-C and SIGTERM go to the job instead of detaching')
    .action(async (id: string, _o: TailOptions, self: Command) => {
      const o = optionsOf<TailOptions>(self);
      const client = clientFrom(o);
      const both = offset(o.offset, '--offset');
      const offsets = { stdout: offset(o.stdoutOffset, '--stdout-offset') ?? both, stderr: offset(o.stderrOffset, '--stderr-offset') ?? both };
      const streams: StreamName[] | undefined = o.stdout ? ['stdout'] : o.stderr ? ['stderr'] : undefined;
      process.exitCode = await attach(client, id, { offsets, streams, sigProxy: o.sigProxy, printer: printerFor(o) });
    });
}
