import { ExecdError, toBase64, type ExecdClient, type JobStreamEvent, type StreamName } from '../client/index.js';
import { EXIT, exitCodeOf, spawnFailedCode } from './exit.js';
import { printJson, write, type Printer } from './output.js';

export interface AttachOptions {
  offsets?: { stdout?: number; stderr?: number };
  streams?: StreamName[];
  /** Forward SIGINT and SIGTERM to the job instead of detaching. */
  sigProxy?: boolean;
  printer: Printer;
}

/**
 * Follow a job to its end over the WebSocket stream (resuming after dropped connections): its stdout on
 * stdout, its stderr on stderr, byte for byte; the exit code is the job's. Ctrl-C (or SIGTERM) detaches,
 * saying how to re-attach exactly where it stopped; with sigProxy they are sent to the job instead.
 */
export async function attach(client: ExecdClient, id: string, opts: AttachOptions): Promise<number> {
  const next = { stdout: opts.offsets?.stdout ?? 0, stderr: opts.offsets?.stderr ?? 0 };
  const abort = new AbortController();
  let detachedBy: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (opts.sigProxy) {
      client.jobs.signal(id, signal).catch((err: unknown) => {
        // A job that just ended (409) has nothing left to signal; anything else is worth a line.
        if (!(err instanceof ExecdError && err.status === 409)) process.stderr.write(`execd: could not forward ${signal}: ${(err as Error).message}\n`);
      });
      return;
    }
    detachedBy = signal;
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let startError: { code: string; message: string; errno?: string } | null = null;
  try {
    const events = client.jobs.stream(id, { offsets: next, streams: opts.streams, signal: abort.signal });
    for await (const ev of events) {
      if (ev.type === 'output') {
        next[ev.stream] = ev.offset + ev.data.length;
        if (opts.printer.json) printJson({ ...ev, data: toBase64(ev.data) });
        else await write(ev.stream === 'stdout' ? process.stdout : process.stderr, ev.data);
      } else {
        if (opts.printer.json) printJson(ev);
        if (ev.type === 'state' && ev.error) startError = ev.error;
        if (ev.type === 'gap') {
          next[ev.stream] = ev.to;
          if (!opts.printer.json) process.stderr.write(`execd: bytes ${ev.from}-${ev.to} of the job's ${ev.stream} were not kept (execd show ${id})\n`);
        }
        if (ev.type === 'exit') return exitOf(id, ev, startError, opts.printer);
      }
    }
    if (detachedBy !== null) {
      process.stderr.write(
        `\nexecd: detached from job ${id}; it keeps running. Re-attach: execd tail ${id} --stdout-offset ${next.stdout} --stderr-offset ${next.stderr}\n`,
      );
      return detachedBy === 'SIGINT' ? EXIT.DETACHED : 128 + 15;
    }
    throw new ExecdError(0, 'PROTOCOL', `the stream of job ${id} ended without its exit status`);
  } catch (err) {
    // The server went away mid-follow: the job may well run on; say where to take it up again.
    if (err instanceof ExecdError && err.unavailable) {
      process.stderr.write(`execd: lost job ${id}; once the server answers: execd tail ${id} --stdout-offset ${next.stdout} --stderr-offset ${next.stderr}\n`);
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function exitOf(id: string, ev: Extract<JobStreamEvent, { type: 'exit' }>, startError: { code: string; message: string; errno?: string } | null, p: Printer): number {
  if (ev.returncode === null && startError !== null) {
    if (!p.json) process.stderr.write(`execd: job ${id} did not start: ${startError.code}: ${startError.message}\n`);
    return startError.code === 'SPAWN_FAILED' ? spawnFailedCode(startError.errno) : EXIT.NO_STATUS;
  }
  if (ev.returncode === null && !p.json) process.stderr.write(`execd: job ${id} ended ${ev.state} without an exit status\n`);
  return exitCodeOf(ev);
}
