import type { Command } from 'commander';

export function registerServe(program: Command): Command {
  return program
    .command('serve')
    .description('start the server in the foreground, as npm start does (settings from EXECD_* variables: .env.example)')
    .action(async () => {
      // main.ts reads process.env, listens and shuts down on SIGTERM/SIGINT by itself; it never comes back here.
      await import('../../main.js');
      await new Promise<never>(() => {});
    });
}
