import { Command, Option } from 'commander';
import { COMMANDS } from './commands/index.js';
import { EXIT } from './exit.js';

const VERSION = '0.1.0';

/** The options every command takes; given before the command they apply too. */
export function withCommon(cmd: Command): Command {
  const common = [
    new Option('--url <url>', 'the server (EXECD_URL; default http://127.0.0.1:8080)'),
    new Option('--token-file <file>', 'the token from a file (EXECD_TOKEN_FILE; else EXECD_TOKEN)'),
    new Option('--json', 'JSON output, for scripts'),
    new Option('--no-color', 'no colors (NO_COLOR too)'),
  ];
  for (const option of common) cmd.addOption(option.helpGroup('Common options:'));
  return cmd;
}

/** The groups of `execd help`, each with the commands (by name) it lists. */
const GROUPS: [string, string[]][] = [
  ['Run commands:', ['run', 'exec', 'submit', 'tail', 'explain']],
  ['Jobs:', ['jobs', 'show', 'cancel', 'signal', 'rm', 'queues']],
  ['The server and its host:', ['info', 'ps', 'serve']],
];

const EPILOG = `
Settings:
  EXECD_URL         the server, e.g. http://127.0.0.1:8080
  EXECD_TOKEN       the bearer token (never given on the command line; or --token-file)
  EXECD_TOKEN_FILE  a file holding the token

Exit status:
  run, submit --follow and tail exit with the command's status: its exit code,
  128+n when signal n ended it, 124 when it timed out, 126/127 when it could not
  start (127: not found), 125 when it ended without a status (canceled before it started).
  Otherwise: 0 done, 64 usage error, 65 refused by the server (4xx),
  69 server unreachable or unavailable (5xx), 130 detached with Ctrl-C.

Docs: docs/cli.md`;

/** The execd command line: one module per command under commands/ (COMMANDS lists them). */
export function buildProgram(): Command {
  const program = withCommon(new Command('execd'))
    .description('Run commands on an execd server and follow its jobs; their exit status is yours.')
    .version(VERSION, '-V, --version')
    .enablePositionalOptions()
    .showHelpAfterError('(execd help for the commands, execd help <command> for one)')
    .exitOverride()
    .addHelpText('after', EPILOG);
  program.configureOutput({ outputError: (text, write) => write(text.startsWith('error:') ? `execd: ${text.slice(7)}` : text) });
  for (const register of COMMANDS) {
    const cmd = register(program);
    withCommon(cmd).exitOverride();
    cmd.helpGroup(GROUPS.find(([, names]) => names.includes(cmd.name()))?.[0] ?? 'Other:');
  }
  program.commandsGroup('Other:').helpCommand('help [command]', 'help for a command');
  return program;
}

export { EXIT };
