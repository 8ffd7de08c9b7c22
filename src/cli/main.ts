#!/usr/bin/env node
import { buildProgram } from './program.js';
import { report } from './exit.js';

/** The `execd` command (bin/execd.js runs this): parse, run the command, exit with its code. */
async function main(): Promise<void> {
  // A reader that goes away (execd tail … | head) ends us quietly, as it would any Unix filter.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 70));
  let code: number;
  try {
    await buildProgram().parseAsync(process.argv);
    code = Number(process.exitCode ?? 0);
  } catch (err) {
    code = report(err);
  }
  // `serve` never comes back here while the server runs; everything else ends now, whatever sockets linger.
  process.exit(code);
}

void main();
