import { Command, Option } from 'commander';
import { COMMANDS } from './commands/index.js';
import { EXIT } from './exit.js';

const VERSION = '0.1.0';

/** The options every command takes; given before the command they apply too. */
export function withCommon(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'the server (default: EXECD_URL, else http://127.0.0.1:8080)')
    .option('--token-file <file>', 'read the token from this file (default: EXECD_TOKEN_FILE, else EXECD_TOKEN)')
    .option('--json', 'print JSON for scripts')
    .addOption(new Option('--no-color', 'no colors, even on a terminal (NO_COLOR does the same)'));
}

const EPILOG = `
Settings:
  EXECD_URL         the server, e.g. http://127.0.0.1:8080
  EXECD_TOKEN       the bearer token (never given on the command line; or --token-file)
  EXECD_TOKEN_FILE  a file holding the token

Exit status:
  run, submit --follow and tail exit with the command's status: its exit code,
  128+n when signal n ended it, 124 when it timed out, 126/127 when it could not
  start (127: not found), 125 when it ended without a status (canceled while queued).
  Otherwise: 0 done, 64 usage error, 65 refused by the server (4xx),
  69 server unreachable or unavailable (5xx), 130 detached with Ctrl-C.

Docs: docs/cli.md`;

/** The execd command line: one module per command under commands/ (COMMANDS lists them). */
export function buildProgram(): Command {
  const program = withCommon(new Command('execd'))
    .description('Run commands on an execd server and follow jobs, with their exit status as your own.')
    .version(VERSION, '-V, --version')
    .enablePositionalOptions()
    .showHelpAfterError('(execd help for the commands, execd help <command> for one)')
    .exitOverride()
    .addHelpText('after', EPILOG);
  program.configureOutput({ outputError: (text, write) => write(text.startsWith('error:') ? `execd: ${text.slice(7)}` : text) });
  for (const register of COMMANDS) {
    const cmd = register(program);
    withCommon(cmd).exitOverride();
  }
  return program;
}

export { EXIT };
