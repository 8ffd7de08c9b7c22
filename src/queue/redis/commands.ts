/**
 * The Redis backend's state machine: every change of a job record happens in
 * one of the Lua scripts of lua/ (one per step, named after it), atomically,
 * and publishes its event in the same step, so every node sees the same order
 * of states. BullMQ only carries the work to the workers (FIFO per queue, one
 * worker per job); whether a job may start, and how it ends, is decided here.
 *
 * The scripts follow job.ts's transition table, which is handed to them as
 * the Lua table NEXT (checked by `mayMove`/`mustMove` in lua/common.lua):
 *
 *   script    job.ts transition
 *   SUBMIT    (new record: queued or scheduled, unconfirmed)   CONFIRM   (accepted: seen)
 *   START     queued -> running (scheduled -> queued -> running when delivered at its time)
 *   STARTED   (running: pid known, secret dropped on the last attempt)
 *   FINISH    running -> succeeded | failed | timed_out | canceled | lost, or -> scheduled (a retry)
 *   CANCEL    queued | scheduled -> canceled (a running job is marked; its worker's FINISH ends it)
 *   REAP      running -> lost (worker gone), or -> scheduled (retried on lost); forgets expired and never-confirmed records
 *   PROMOTE   scheduled -> queued once its time has come (at the back of its queue)
 *   ABANDON, REMOVE   (the record goes: an unconfirmed submit, a terminal job)
 *
 * Keys (P is EXECD_REDIS_PREFIX):
 *   P:seq                 acceptance counter (list cursor, FIFO order)
 *   P:jobs                zset seq → id, every kept job
 *   P:wait:<queue>        zset place → id, the queued jobs of a queue (position, capacity); place: seq, or a new P:seq when promoted
 *   P:sched:<queue>       zset runAt → id, its scheduled jobs (delayed starts, retries in backoff; counted in capacity)
 *   P:run:<queue>         set of the running jobs of a queue
 *   P:running             hash id → node id, every running job (the reaper's list)
 *   P:done                zset finishedAt → id, finished jobs (retention)
 *   P:stats               hash "<queue>:processed" / "<queue>:failed"
 *   P:job:<id>            hash, the record (record.ts; `secret` holds env values and stdin until its last attempt starts;
 *                         `attempts` a JSON array, one entry per attempt: node, host, times, state, result, output offsets)
 *   P:out:<id>:<stream>   stream of output chunks (`d`, ids <attempt>-<n>: every attempt appends), closed by one end entry
 *                         (`e`, `t` = truncated) once the job is terminal
 *   P:idem:<owner>:<key>  string → job id (Idempotency-Key, per owner)
 *   P:unconfirmed         zset confirmBy → id, submits whose BullMQ add has not been confirmed
 *   P:node:<node>         string with a TTL: a worker's heartbeat
 *   P:nodes               set of node ids that ever beat (pruned when their heartbeat is gone)
 * Channels: P:events (lifecycle), P:ctl:<node> (to a worker), P:reply:<node> (its answers).
 *
 * The scripts touch keys they compute from the prefix, so they need one Redis
 * primary (not Redis Cluster), as documented in docs/redis.md.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { JOB_STATES, nextStates, type JobError, type JobResult, type JobState, type TerminalState } from '../job.js';
import { FIELDS, type Flat } from './record.js';
import { CODE_DIR } from '../../paths.js';

/** The .lua files sit beside this module in src/ and, copied by `npm run build`, in dist/. */
const read = (name: string): string => readFileSync(new URL(`queue/redis/lua/${name}.lua`, CODE_DIR), 'utf8');

const luaList = (items: readonly string[]): string => `{${items.map((s) => `'${s}'`).join(', ')}}`;
const PRELUDE = [
  `local FIELDS = ${luaList(FIELDS)}`,
  `local NEXT = {${JOB_STATES.map((s) => `${s} = ${luaList(nextStates(s))}`).join(', ')}}`,
  read('common'),
].join('\n');

const NAMES = ['submit', 'abandon', 'confirm', 'start', 'started', 'finish', 'cancel', 'remove', 'view', 'reap', 'promote'] as const;
type Name = (typeof NAMES)[number];
type Scripted = Redis & Record<`execd_${Name}`, (...args: (string | number)[]) => Promise<unknown>>;

/** Load every script onto a connection (EVALSHA, falling back to EVAL after a Redis restart). */
export function defineScripts(conn: Redis): void {
  for (const name of NAMES) conn.defineCommand(`execd_${name}`, { numberOfKeys: 0, lua: `${PRELUDE}\n${read(name)}` });
}

export type SubmitResult =
  | { kind: 'ok'; seq: number; position: number }
  | { kind: 'dup'; jobId: string }
  | { kind: 'conflict'; jobId: string }
  | { kind: 'full' };

export type StartResult =
  | {
      kind: 'taken'; attempt: string; spec: string; secret: string; grant: string; owner: string; queue: string;
      /** Where this attempt's output begins in each stream (attempts append). */
      base: { stdout: number; stderr: number };
    }
  | { kind: 'wait' }
  | { kind: 'gone' };

export type CancelResult = { kind: 'unknown' } | { kind: 'canceled' } | { kind: 'running'; node: string; attempt: string } | { kind: 'ended'; state: JobState };

export type RemoveResult = { kind: 'removed' } | { kind: 'unknown' } | { kind: 'not-terminal'; state: JobState };

export interface LostJob {
  id: string;
  host: string;
  instance: string;
}

export interface SubmitArgs {
  id: string;
  queue: string;
  now: number;
  owner: string;
  spec: string;
  secret: string;
  grant: string;
  digest: string;
  capacity: number;
  idempotencyKey: string;
  confirmMs: number;
  /** Delayed start (epoch ms), or null: queued now. */
  runAt: number | null;
  /** The accepting node. */
  node: string;
  maxAttempts: number;
}

/** A scheduled job PROMOTE queued: BullMQ gets it again as `<id>.<attempt>`. */
export interface Promoted {
  id: string;
  queue: string;
  attempt: number;
}

export interface StartArgs {
  node: string;
  host: string;
  instance: string;
  now: number;
  heartbeat: string;
  stallMs: number;
  token: string;
}

export interface FinishArgs {
  attempt: string;
  state: TerminalState;
  now: number;
  result: JobResult | null;
  error: JobError | null;
  dropped: { stdout: number; stderr: number };
  retainJobs: number;
  /** Set when the job is retried (queue/retry.ts): its next attempt waits this long, scheduled. */
  retryDelayMs?: number | null;
}

/** The scripts as typed calls: arguments by name, answers decoded into values. */
export class Scripts {
  private readonly conn: Scripted;

  constructor(
    conn: Redis,
    private readonly prefix: string,
  ) {
    defineScripts(conn);
    this.conn = conn as Scripted;
  }

  async submit(a: SubmitArgs): Promise<SubmitResult> {
    const r = (await this.conn.execd_submit(this.prefix, a.id, a.queue, a.now, a.owner, a.spec, a.secret, a.grant, a.digest,
      a.capacity, a.idempotencyKey, a.confirmMs, a.runAt ?? '', a.node, a.maxAttempts)) as [string, string?, number?];
    switch (r[0]) {
      case 'ok':
        return { kind: 'ok', seq: Number(r[1]), position: Number(r[2]) };
      case 'dup':
        return { kind: 'dup', jobId: r[1]! };
      case 'conflict':
        return { kind: 'conflict', jobId: r[1]! };
      default:
        return { kind: 'full' };
    }
  }

  /** True when the unconfirmed record was removed. */
  async abandon(id: string): Promise<boolean> {
    return (await this.conn.execd_abandon(this.prefix, id)) === 1;
  }

  /** False when the record is gone (it was abandoned). */
  async confirm(id: string): Promise<boolean> {
    return (await this.conn.execd_confirm(this.prefix, id)) === 1;
  }

  async start(id: string, a: StartArgs): Promise<StartResult> {
    const r = (await this.conn.execd_start(this.prefix, id, a.node, a.host, a.instance, a.now, a.heartbeat, a.stallMs, a.token)) as
      | null
      | ['wait']
      | ['ok', string, string, string, string, string, string, string, string];
    if (!r) return { kind: 'gone' };
    if (r[0] === 'wait') return { kind: 'wait' };
    const [, attempt, spec, secret, grant, owner, queue, obo, obe] = r;
    return { kind: 'taken', attempt, spec, secret, grant, owner, queue, base: { stdout: Number(obo) || 0, stderr: Number(obe) || 0 } };
  }

  /** False when the job is no longer at this attempt. */
  async started(id: string, attempt: string, pid: number): Promise<boolean> {
    return (await this.conn.execd_started(this.prefix, id, attempt, pid)) === 1;
  }

  /** 'ended', 'retried' (scheduled for its next attempt), or 'fenced': not this attempt any more, or already ended (declared lost). */
  async finish(id: string, a: FinishArgs): Promise<'ended' | 'retried' | 'fenced'> {
    const result = a.result ? JSON.stringify(a.result) : '';
    const error = a.error ? JSON.stringify(a.error) : '';
    const r = await this.conn.execd_finish(this.prefix, id, a.attempt, a.state, a.now, result, error, a.dropped.stdout, a.dropped.stderr,
      a.retainJobs, a.retryDelayMs ?? '');
    return r === 1 ? 'ended' : r === 2 ? 'retried' : 'fenced';
  }

  /** Scheduled jobs whose time has come, queued now (PROMOTE). */
  async promote(now: number, queues: readonly string[]): Promise<Promoted[]> {
    const r = (await this.conn.execd_promote(this.prefix, now, ...queues)) as string[];
    const out: Promoted[] = [];
    for (let i = 0; i + 2 < r.length; i += 3) out.push({ id: r[i]!, queue: r[i + 1]!, attempt: Number(r[i + 2]) });
    return out;
  }

  async cancel(id: string, now: number, retainJobs: number): Promise<CancelResult> {
    const r = (await this.conn.execd_cancel(this.prefix, id, now, retainJobs)) as string[];
    if (r.length === 0) return { kind: 'unknown' };
    if (r[0] === 'canceled') return { kind: 'canceled' };
    if (r[0] === 'running') return { kind: 'running', node: r[1]!, attempt: r[2]! };
    return { kind: 'ended', state: r[0] as JobState };
  }

  async remove(id: string): Promise<RemoveResult> {
    const r = (await this.conn.execd_remove(this.prefix, id)) as string[];
    if (r.length === 0) return { kind: 'unknown' };
    if (r[0] === 'ok') return { kind: 'removed' };
    return { kind: 'not-terminal', state: r[0] as JobState };
  }

  /** The record's fields (FIELDS order) and its place in line. */
  async view(id: string): Promise<{ fields: Flat; position: number | null }> {
    const r = (await this.conn.execd_view(this.prefix, id)) as (string | number | null)[];
    const position = r[FIELDS.length];
    return { fields: r.slice(0, FIELDS.length), position: typeof position === 'number' ? position : null };
  }

  /** The running jobs declared lost this round (their worker's heartbeat is gone). */
  async reap(now: number, retainMs: number, retainJobs: number): Promise<LostJob[]> {
    const r = (await this.conn.execd_reap(this.prefix, now, retainMs, retainJobs)) as string[];
    const lost: LostJob[] = [];
    for (let i = 0; i < r.length; i += 4) lost.push({ id: r[i]!, host: r[i + 1]!, instance: r[i + 2]! });
    return lost;
  }
}
