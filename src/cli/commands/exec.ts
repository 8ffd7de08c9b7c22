import type { Command } from 'commander';
import { ExecdError, fromBase64, type JobRequest } from '../../client/index.js';
import { SocketReader, socketAuth } from '../../client/socket.js';
import { EXIT, exitCodeOf, spawnFailedCode } from '../exit.js';
import { write } from '../output.js';
import { clientFrom, tokenFrom, type CommonOptions } from '../settings.js';
import { specFrom, specOptions, type SpecOptions } from '../spec.js';

interface ExecOptions extends CommonOptions, SpecOptions {
  interactive?: boolean;
  tty?: boolean;
  queue?: string;
}

/** What a terminal types for Ctrl-D: a terminal's stdin has no end, so the end of ours is sent as it. */
const CTRL_D = '\u0004';

export function registerExec(program: Command): Command {
  const cmd = program
    .command('exec')
    .description(
      'run a command as a job attached to this terminal, as docker exec: -i sends your stdin as you type, -t runs it on a ' +
        'terminal of your window size (raw keys, Ctrl-C as a byte, resizes followed); exits with its status',
    )
    .argument('<argv...>', 'the program and its arguments (after --, or after the options)')
    .option('-i, --interactive', 'stream your stdin to the command')
    .option('-t, --tty', 'run it on a pseudo-terminal (needs the native spawner and a policy rule with "tty": true)')
    .option('-q, --queue <name>', 'the queue (default: "default")')
    .passThroughOptions();
  specOptions(cmd, { timeoutHelp: "the command's timeout (server default: EXECD_JOB_TIMEOUT_MS; 0 for none)" });
  return cmd.action(async (argv: string[], _o: ExecOptions, self: Command) => {
    const o = self.optsWithGlobals<ExecOptions>();
    process.exitCode = await exec(argv, o);
  });
}

async function exec(argv: string[], o: ExecOptions): Promise<number> {
  const client = clientFrom(o);
  const spec = specFrom(argv, o) as JobRequest & Record<string, unknown>;
  if (o.queue !== undefined) spec.queue = o.queue;
  const local = process.stdin.isTTY === true && process.stdout.isTTY === true;
  if (o.tty) spec.tty = { cols: process.stdout.columns || 80, rows: process.stdout.rows || 24 };
  else if (o.interactive) spec.stdin = { stream: true };
  const job = await client.jobs.submit(spec);
  const token = tokenFrom(o, process.env);
  const url = `${client.url.replace(/^http/, 'ws')}/v1/jobs/${encodeURIComponent(job.id)}/stream?encoding=base64`;
  const socket = new SocketReader(url, socketAuth(token)); // the Authorization header: any token, not only subprotocol-safe ones
  if (!(await socket.open)) throw new ExecdError(0, 'UNREACHABLE', `cannot open the stream of job ${job.id} (${url.replace(/\?.*/, '')})`);

  const raw = o.tty === true && o.interactive === true && local;
  const restore = raw ? rawMode() : () => {};
  const onResize = () => socket.send({ type: 'resize', cols: process.stdout.columns, rows: process.stdout.rows });
  // Without a terminal, Ctrl-C and SIGTERM here go to the command (with one, Ctrl-C is a byte it gets typed).
  const onSignal = (signal: NodeJS.Signals) => socket.send({ type: 'signal', signal });
  // This terminal closed: the remote one hangs up too (its stdin closed), or the command gets the SIGHUP.
  const onHangup = () => socket.send(o.tty ? { type: 'stdin', eof: true } : { type: 'signal', signal: 'SIGHUP' });
  let forwarding = false;
  const forwardStdin = () => {
    if (forwarding || !o.interactive) return;
    forwarding = true;
    process.stdin.on('data', (chunk: Buffer) => socket.send({ type: 'stdin', data: chunk.toString('base64') }));
    process.stdin.once('end', () => socket.send(o.tty ? { type: 'stdin', data: Buffer.from(CTRL_D).toString('base64') } : { type: 'stdin', eof: true }));
  };
  if (o.tty && local) process.stdout.on('resize', onResize);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onHangup);
  type StartError = { code: string; message: string; errno?: string };
  let startError = null as StartError | null;
  try {
    for (;;) {
      const item = await socket.next();
      if (item.kind === 'close') {
        throw new ExecdError(0, 'DISCONNECTED', `the stream of job ${job.id} closed (${item.code}) before its end; it may still run: execd tail ${job.id}`);
      }
      if (item.kind !== 'text') continue;
      const frame = JSON.parse(item.text) as Record<string, unknown> & { type: string };
      if (frame.type === 'output') {
        await write(frame.stream === 'stderr' ? process.stderr : process.stdout, fromBase64(frame.data as string));
        forwardStdin();
      } else if (frame.type === 'state') {
        if (frame.state === 'running') forwardStdin(); // input sent before the process exists would be refused
        if (frame.error) startError = frame.error as StartError;
      } else if (frame.type === 'error') {
        if (!raw || frame.code !== 'CONFLICT') process.stderr.write(`execd: ${String(frame.code)}: ${String(frame.detail)}\n`);
      } else if (frame.type === 'exit') {
        const exit = frame as unknown as { returncode: number | null; exitCode: number | null; signal: string | null; timedOut: boolean };
        if (exit.returncode === null && startError) {
          process.stderr.write(`execd: job ${job.id} did not start: ${startError.code}: ${startError.message}\n`);
          return startError.code === 'SPAWN_FAILED' ? spawnFailedCode(startError.errno) : EXIT.NO_STATUS;
        }
        return exitCodeOf(exit);
      }
    }
  } finally {
    restore();
    process.stdout.off('resize', onResize);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onHangup);
    process.stdin.pause();
    socket.close();
  }
}

/** Put the local terminal in raw mode (keys as typed, no echo, no signals); the returned function puts it back, once. */
function rawMode(): () => void {
  process.stdin.setRawMode(true);
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    process.stdin.setRawMode(false);
  };
  // Whatever ends us (an uncaught error, process.exit in main), the terminal is left as it was.
  process.once('exit', restore);
  return restore;
}
