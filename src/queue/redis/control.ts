import type { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { ControlMessage, LocalRuns } from '../local-runs.js';
import type { JobQueueEvents } from '../types.js';
import type { Connections } from './connections.js';
import { decodeRecord, viewOf, type Flat } from './record.js';

/**
 * Longest wait for a worker's answer to a signal: one sent while the job's process is being started is held
 * there until it exists (a start takes milliseconds; this only bounds a worker that stopped answering).
 */
export const SIGNAL_REPLY_MS = 10_000;
/**
 * A streamed stdin write has no deadline while the job runs (a child that reads late only slows the writer):
 * unanswered, it is sent again this often, with the same request id. The worker applies it once and answers
 * each copy, so a lost message or answer is made good; a worker that no longer listens ends the wait.
 */
const STDIN_RESEND_MS = 2000;
/** How long a worker remembers a stdin write's outcome, for a copy sent again because the answer was lost. */
const STDIN_REMEMBER_MS = 10_000;

/** A control message on the wire: stdin bytes as base64, fenced by the run attempt; with `rid` when it wants an answer. */
type Wire =
  | { op: 'cancel'; id: string; attempt: string }
  | { op: 'signal'; id: string; attempt: string; signal: NodeJS.Signals; rid: string; from: string }
  | { op: 'stdin'; id: string; attempt: string; data: string | null; rid: string; from: string }
  | { op: 'resize'; id: string; attempt: string; cols: number; rows: number; rid: string; from: string };

interface Message {
  t?: string;
  id?: string;
  f?: Flat;
  pos?: number | false;
  rid?: string;
  ok?: boolean;
  op?: string;
}

/**
 * A node's pub/sub: lifecycle events from the scripts (to the queue's events
 * and its long-polls), and the control messages that carry cancel, signal and
 * stdin to the worker running a job, with their answers.
 */
export class ControlChannel {
  private readonly replies = new Map<string, (ok: boolean) => void>();
  /** Streamed stdin writes on this worker by request id, applied or being applied: a copy sent again is not written twice. */
  private readonly stdinWrites = new Map<string, Promise<boolean>>();
  private rpcSeq = 0;

  constructor(
    private readonly conns: Connections,
    private readonly sub: Redis,
    private readonly prefix: string,
    private readonly nodeId: string,
    /** This node runs jobs: it listens for control messages, and takes its own directly. */
    private readonly runsJobs: boolean,
    private readonly runs: LocalRuns,
    private readonly events: EventEmitter<JobQueueEvents>,
    private readonly on: { ended(id: string): void; removed(id: string): void; failed(err: unknown): void },
  ) {
    const channels = [this.channel('events'), this.channel('reply', nodeId)];
    if (runsJobs) channels.push(this.channel('ctl', nodeId));
    sub.subscribe(...channels).catch(() => {}); // ioredis subscribes again on every reconnect
    sub.on('message', (channel: string, message: string) => this.onMessage(channel, message));
  }

  /** Tell the node running a job to stop it; false when no node listens. */
  cancel(node: string, id: string, attempt: string): Promise<boolean> {
    return this.send(node, { op: 'cancel', id, attempt });
  }

  /** A signal or stdin write, answered: false when the job's worker says no, does not listen, or does not answer in time. */
  request(node: string, id: string, attempt: string, msg: Exclude<ControlMessage, { op: 'cancel' }>): Promise<boolean> {
    const rid = `${this.nodeId}:${++this.rpcSeq}`;
    if (msg.op === 'signal') return this.rpc(node, { op: 'signal', id, attempt, signal: msg.signal, rid, from: this.nodeId }, SIGNAL_REPLY_MS);
    if (msg.op === 'resize') return this.rpc(node, { op: 'resize', id, attempt, cols: msg.cols, rows: msg.rows, rid, from: this.nodeId }, SIGNAL_REPLY_MS);
    const data = msg.data === null ? null : msg.data.toString('base64');
    // The worker answers once the pipe has room again: a writer that awaits each call stays bounded across nodes.
    return this.rpc(node, { op: 'stdin', id, attempt, data, rid, from: this.nodeId }, 'until-answered');
  }

  /** Every request still waiting gets false (a shutdown). */
  close(): void {
    for (const resolve of this.replies.values()) resolve(false);
  }

  private channel(name: string, node?: string): string {
    return node === undefined ? `${this.prefix}:${name}` : `${this.prefix}:${name}:${node}`;
  }

  /** A message for this worker: cancel, signal or stdin of a job it runs, fenced by the attempt. */
  private async apply(msg: Wire): Promise<boolean> {
    if (msg.op === 'cancel') return this.runs.apply(msg.id, { op: 'cancel' }, msg.attempt);
    if (msg.op === 'signal') return this.runs.apply(msg.id, { op: 'signal', signal: msg.signal }, msg.attempt);
    if (msg.op === 'resize') return this.runs.apply(msg.id, { op: 'resize', cols: msg.cols, rows: msg.rows }, msg.attempt);
    const known = this.stdinWrites.get(msg.rid);
    if (known) return known; // a copy sent again (its answer was lost, or is still to come): the same outcome
    const data = msg.data === null ? null : Buffer.from(msg.data, 'base64');
    const write = this.runs.apply(msg.id, { op: 'stdin', data }, msg.attempt);
    this.stdinWrites.set(msg.rid, write);
    void write.finally(() => setTimeout(() => this.stdinWrites.delete(msg.rid), STDIN_REMEMBER_MS).unref());
    return write;
  }

  private onMessage(channel: string, message: string): void {
    let msg: Message;
    try {
      msg = JSON.parse(message) as Message;
    } catch {
      return;
    }
    if (channel === this.channel('events')) {
      if (msg.t === 'removed') {
        this.on.removed(msg.id!);
        this.on.ended(msg.id!);
        return;
      }
      const name = msg.t as keyof JobQueueEvents;
      const record = msg.f ? decodeRecord(msg.f) : null;
      if (msg.t === 'finished' && record) this.on.ended(record.id);
      if (this.events.listenerCount(name) === 0 || !record) return;
      const job = viewOf(record, msg.pos ?? null);
      if (job) this.events.emit(name, job, record.ownerId);
    } else if (channel === this.channel('reply', this.nodeId)) {
      const resolve = this.replies.get(msg.rid!);
      this.replies.delete(msg.rid!);
      resolve?.(msg.ok === true);
    } else if (msg.op) {
      const wire = msg as unknown as Wire;
      void this.apply(wire).then((ok) => {
        if (wire.op === 'cancel') return;
        void this.conns.cmd.publish(this.channel('reply', wire.from), JSON.stringify({ rid: wire.rid, ok })).catch(() => {});
      }, this.on.failed);
    }
  }

  /** Send a control message to the node running a job (this one directly); false when no node listens. */
  private async send(node: string, msg: Wire): Promise<boolean> {
    if (node === this.nodeId && this.runsJobs) return this.apply(msg);
    const listeners = await this.conns.call(() => this.conns.cmd.publish(this.channel('ctl', node), JSON.stringify(msg)));
    return listeners > 0;
  }

  /**
   * A control message with an answer: false when the job's worker says no, does not listen, or does not answer
   * within `timeoutMs`. 'until-answered': no deadline, the message is sent again every STDIN_RESEND_MS until
   * the worker answers (it applies it once) or no longer listens.
   */
  private async rpc(node: string, msg: Wire & { rid: string }, timeoutMs: number | 'until-answered'): Promise<boolean> {
    if (node === this.nodeId && this.runsJobs) return this.apply(msg);
    let answer!: (ok: boolean) => void;
    const answered = new Promise<boolean>((resolve) => (answer = resolve));
    this.replies.set(msg.rid, answer);
    let timer: NodeJS.Timeout | undefined;
    try {
      if (!(await this.send(node, msg))) return false;
      if (timeoutMs === 'until-answered') {
        // Redis away: the next round tries again
        const again = () => this.send(node, msg).then((listened) => listened || answer(false), () => {});
        timer = setInterval(() => void again(), STDIN_RESEND_MS);
      } else {
        timer = setTimeout(() => answer(false), timeoutMs);
      }
      return await answered;
    } finally {
      clearInterval(timer);
      this.replies.delete(msg.rid);
    }
  }
}
