import type { Command } from 'commander';
import type { CommandSpec } from '../../client/index.js';
import { EXIT, UsageError } from '../exit.js';
import { fields, paint, print, printJson, printerFor, size, table } from '../output.js';
import { clientFrom, optionsOf, type CommonOptions } from '../settings.js';
import { specFrom, specOptions, type SpecOptions } from '../spec.js';

export function registerInfo(program: Command): Command {
  return program
    .command('info')
    .description('the server process: pid, user, cwd, host, uptime, memory')
    .action(async (_o, self: Command) => {
      const o = optionsOf<CommonOptions>(self);
      const p = printerFor(o);
      const info = await clientFrom(o).info();
      if (p.json) return printJson(info);
      const entries = Object.entries(info).map(([k, v]): [string, unknown] => [k, k === 'uptimeMs' ? `${Math.round(Number(v) / 1000)} s` : v]);
      print(fields(p, entries));
    });
}

const id = (name: string, text: string | undefined): number | undefined => {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name} must be a number`);
  return Number(text);
};

export function registerPs(program: Command): Command {
  return program
    .command('ps')
    .description("the server host's processes (with the job of each)")
    .option('--user <uid>', 'only processes of this uid')
    .option('--pgid <pgid>', 'only members of this process group')
    .option('--execd', 'only processes execd started')
    .action(async (_o, self: Command) => {
      const o = optionsOf<CommonOptions & { user?: string; pgid?: string; execd?: boolean }>(self);
      const p = printerFor(o);
      const list = await clientFrom(o).processes({ user: id('user', o.user), pgid: id('pgid', o.pgid), execd: o.execd });
      if (p.json) return printJson(list);
      const rows = list.items.map((x) => [
        String(x.pid), String(x.ppid), String(x.pgid), String(x.uid), x.state, size(x.rssBytes ?? 0), x.jobId ?? '',
        (x.argv.length > 0 ? x.argv.join(' ') : `[${x.name}]`).slice(0, 80),
      ]);
      print(table(p, ['PID', 'PPID', 'PGID', 'UID', 'S', 'RSS', 'JOB', 'COMMAND'], rows));
    });
}

export function registerExplain(program: Command): Command {
  const cmd = program
    .command('explain')
    .description('would the policy allow this command, by which rule, why (exit 0 or 65)')
    .argument('<argv...>', 'the program and its arguments (options of execd go before it)')
    .passThroughOptions();
  specOptions(cmd, { timeoutHelp: 'the timeout to ask for' });
  return cmd.action(async (argv: string[], _o, self: Command) => {
    const o = optionsOf<CommonOptions & SpecOptions>(self);
    const p = printerFor(o);
    const decision = await clientFrom(o).policy.explain(specFrom(argv, o) as CommandSpec);
    process.exitCode = decision.allowed ? EXIT.OK : EXIT.REFUSED;
    if (p.json) return printJson(decision);
    const verdict = decision.allowed ? paint(p, 'green', 'allowed') : paint(p, 'red', 'refused');
    print(`${verdict} by rule ${decision.rule}`);
    for (const reason of decision.reasons) print(`  ${reason}`);
    if (decision.effective) print(fields(p, Object.entries(decision.effective)));
  });
}
