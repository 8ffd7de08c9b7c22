import type { Command } from 'commander';
import { outputBytes, type RunRequest } from '../../client/index.js';
import { exitCodeOf } from '../exit.js';
import { printJson, printerFor, write } from '../output.js';
import { clientFrom, optionsOf, type CommonOptions } from '../settings.js';
import { readStdin, specFrom, specOptions, type SpecOptions } from '../spec.js';

interface RunOptions extends CommonOptions, SpecOptions {
  interactive?: boolean;
  base64?: boolean;
}

export function registerRun(program: Command): Command {
  const cmd = program
    .command('run')
    .description('run a command and wait: its output and exit status are yours, byte for byte')
    .argument('<argv...>', 'the program and its arguments (options of execd go before it)')
    .option('-i, --interactive', 'send your stdin (read to its end first; exec -i streams it)')
    .option('--base64', 'with --json: stdout and stderr in base64 (exact bytes)')
    .passThroughOptions();
  specOptions(cmd, { timeoutHelp: 'timeout (server default: EXECD_TIMEOUT_MS)' });
  return cmd.action(async (argv: string[], _o: RunOptions, self: Command) => {
    const o = optionsOf<RunOptions>(self);
    const client = clientFrom(o);
    const p = printerFor(o);
    const spec = { ...specFrom(argv, o), encoding: p.json && !o.base64 ? 'utf8' : 'base64' } as RunRequest;
    if (o.interactive) Object.assign(spec, { stdin: (await readStdin()).toString('base64'), stdinEncoding: 'base64' });
    const result = await client.run(spec);
    if (p.json) {
      printJson(result);
    } else {
      await write(process.stdout, outputBytes(result.stdout, result.encoding));
      await write(process.stderr, outputBytes(result.stderr, result.encoding));
    }
    process.exitCode = exitCodeOf(result);
  });
}
