import type { RunHandle } from '../runner/index.js';
import { StartGate } from './start-gate.js';
import { writeStdinInTurn } from './stdin.js';

export type StopReason = 'cancel' | 'shutdown';

/** What reaches a job's process from outside: a cancel, a signal, a stdin write (null ends it), a terminal's resize. */
export type ControlMessage =
  | { op: 'cancel' }
  | { op: 'signal'; signal: NodeJS.Signals }
  | { op: 'stdin'; data: Buffer | null }
  | { op: 'resize'; cols: number; rows: number };

/** A job this process runs, from the moment a worker takes it to its end. */
export class LocalRun {
  /** Which start of the job this is, where the backend fences messages by it (Redis); null until claimed. */
  attempt: string | null = null;
  handle: RunHandle | null = null;
  /** Opened once the start is over: what needs the process before it exists (a signal) waits for it here. */
  readonly started = new StartGate();
  /** A stop asked for before the process existed (the first reason wins). */
  stopReason: StopReason | null = null;
  /** This worker lost its backend and killed the job itself (it ends `lost`). */
  fenced = false;

  constructor(readonly id: string) {}

  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    this.handle?.terminate(reason);
  }

  /** The process once it exists; null when it never started (or has been handed back). */
  process(): Promise<RunHandle | null> {
    return this.handle ? Promise.resolve(this.handle) : this.started.process();
  }
}

/** The jobs this process runs, by id: where cancel, signal and stdin meet the process, whichever backend carried them. */
export class LocalRuns {
  private readonly byId = new Map<string, LocalRun>();

  get size(): number {
    return this.byId.size;
  }

  values(): IterableIterator<LocalRun> {
    return this.byId.values();
  }

  get(id: string): LocalRun | undefined {
    return this.byId.get(id);
  }

  begin(id: string): LocalRun {
    const run = new LocalRun(id);
    this.byId.set(id, run);
    return run;
  }

  end(run: LocalRun): void {
    run.started.open(null); // never started: a signal still waiting is refused
    if (this.byId.get(run.id) === run) this.byId.delete(run.id);
  }

  stopAll(reason: StopReason): void {
    for (const run of this.byId.values()) run.stop(reason);
  }

  /**
   * Apply a message to a job run here; false when it is not (or, with `attempt`, no longer the same start), or
   * the process cannot take it. A signal or stdin write to a job whose process is still being started waits for it.
   */
  async apply(id: string, msg: ControlMessage, attempt?: string): Promise<boolean> {
    const run = this.byId.get(id);
    if (!run || (attempt !== undefined && run.attempt !== null && run.attempt !== attempt)) return false;
    if (msg.op === 'cancel') {
      run.stop('cancel');
      return true;
    }
    const handle = await run.process();
    if (!handle) return false;
    if (msg.op === 'signal') return handle.signal(msg.signal);
    if (msg.op === 'resize') return handle.resize({ cols: msg.cols, rows: msg.rows });
    return writeStdinInTurn(handle, msg.data); // a writer waits while the child does not read: the pipe's buffer stays bounded
  }
}
