import type { Command } from 'commander';

export function registerServe(program: Command): Command {
  return program
    .command('serve')
    .description('start the server in the foreground, as npm start (EXECD_* settings)')
    .action(async () => {
      // main.ts reads process.env, listens and shuts down on SIGTERM/SIGINT by itself; it never comes back here.
      await import('../../main.js');
      await new Promise<never>(() => {});
    });
}
