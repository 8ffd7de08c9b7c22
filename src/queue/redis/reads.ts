import type { Config } from '../../config.js';
import type { Job, JobList, QueueInfo } from '../../schemas/jobs.js';
import { hasLabels } from '../retry.js';
import type { ListRequest } from '../types.js';
import type { Connections } from './connections.js';
import { FIELDS, decodeRecord, viewOf, type Flat, type StoredRecord } from './record.js';
import type { Scripts } from './commands.js';

/** Jobs scanned at most for one list page with filters; the cursor then continues after the last one scanned. */
const LIST_SCAN_MAX = 5000;

type ReadsConfig = Pick<Config, 'queues' | 'queueCapacity'>;

/** What any node reads: one job, a page of jobs, the queues' counts. */
export class Reads {
  constructor(
    private readonly conns: Connections,
    private readonly scripts: Scripts,
    private readonly prefix: string,
    private readonly config: ReadsConfig,
    /** This node's own workers per queue (none on an API node): counted before its first heartbeat lands. */
    private readonly own: { nodeId: string; runsJobs: boolean },
  ) {}

  async view(id: string): Promise<Job | undefined> {
    const { fields, position } = await this.conns.call(() => this.scripts.view(id));
    return viewOf(decodeRecord(fields), position) ?? undefined;
  }

  async ownerOf(id: string): Promise<string | null | undefined> {
    const owner = await this.conns.call(() => this.conns.cmd.hget(this.key('job', id), 'owner'));
    return owner === null ? undefined : (JSON.parse(owner) as string | null);
  }

  /** The fields a control decision needs: state, and where it runs. */
  async placement(id: string): Promise<{ state: string | null; node: string | null; attempt: string | null }> {
    const [state, node, attempt] = await this.conns.call(() => this.conns.cmd.hmget(this.key('job', id), 'state', 'node', 'attempt'));
    return { state: state ?? null, node: node ?? null, attempt: attempt ?? null };
  }

  /** A page in acceptance order (seq, the score of P:jobs), oldest or (desc) newest first; the cursor is the last seq passed. */
  list({ state, queue, owner, limit, order = 'asc', cursor, labels }: ListRequest): Promise<JobList> {
    const desc = order === 'desc';
    const matches = (r: StoredRecord | null): r is StoredRecord =>
      r !== null && !r.unconfirmed && (state === undefined || r.state === state) && (queue === undefined || r.queue === queue) &&
      (owner === undefined || r.ownerId === owner) && hasLabels(r.spec, labels);
    return this.conns.call(async () => {
      const items: Job[] = [];
      const queued: { at: number; record: StoredRecord }[] = [];
      // asc: the seqs above `after`; desc: the seqs below it (+inf: from the newest)
      let after = cursor === undefined ? (desc ? Infinity : 0) : Number(cursor);
      let scanned = 0;
      const page = Math.min(1000, Math.max(100, limit * 2));
      for (;;) {
        const ids = desc
          ? await this.conns.cmd.zrevrangebyscore(this.key('jobs'), after === Infinity ? '+inf' : `(${after}`, '-inf', 'WITHSCORES', 'LIMIT', 0, page)
          : await this.conns.cmd.zrangebyscore(this.key('jobs'), `(${after}`, '+inf', 'WITHSCORES', 'LIMIT', 0, page);
        if (ids.length === 0) return { items, nextCursor: null };
        const pipeline = this.conns.cmd.pipeline();
        for (let i = 0; i < ids.length; i += 2) pipeline.hmget(this.key('job', ids[i]!), ...FIELDS);
        const rows = (await pipeline.exec())!.map(([err, f]) => (err ? null : decodeRecord(f as Flat)));
        for (let i = 0; i < rows.length; i++) {
          const record = rows[i]!;
          scanned++;
          if (matches(record)) {
            if (items.length === limit) return this.withPositions(items, queued, String(after));
            if (record.state === 'queued') queued.push({ at: items.length, record });
            items.push(viewOf(record, null)!);
          }
          after = Number(ids[i * 2 + 1]);
        }
        if (ids.length < page * 2) return this.withPositions(items, queued, null);
        if (scanned >= LIST_SCAN_MAX) return this.withPositions(items, queued, String(after));
      }
    });
  }

  queues(): Promise<QueueInfo[]> {
    return this.conns.call(async () => {
      const cmd = this.conns.cmd;
      const pipeline = cmd.pipeline();
      for (const q of this.config.queues) pipeline.zcard(this.key('wait', q.name)).scard(this.key('run', q.name)).zcard(this.key('sched', q.name));
      pipeline.hgetall(this.key('stats')).smembers(this.key('nodes'));
      const res = (await pipeline.exec())!.map(([err, v]) => {
        if (err) throw err;
        return v;
      });
      const stats = res[res.length - 2] as Record<string, string>;
      const nodes = res[res.length - 1] as string[];
      const beats = nodes.length > 0 ? await cmd.mget(...nodes.map((n) => this.key('node', n))) : [];
      // This node's own workers count from the start, before its first heartbeat lands.
      const concurrency = new Map<string, number>(this.own.runsJobs ? this.config.queues.map((q) => [q.name, q.concurrency]) : []);
      beats.forEach((beat, i) => {
        if (nodes[i] === this.own.nodeId) return;
        if (beat === null) {
          void cmd.srem(this.key('nodes'), nodes[i]!).catch(() => {});
          return;
        }
        try {
          for (const [name, n] of Object.entries((JSON.parse(beat) as { queues?: Record<string, number> }).queues ?? {})) {
            concurrency.set(name, (concurrency.get(name) ?? 0) + n);
          }
        } catch {
          // a heartbeat of another version: no concurrency from it
        }
      });
      return this.config.queues.map((q, i) => ({
        name: q.name,
        concurrency: concurrency.get(q.name) ?? 0,
        running: Number(res[i * 3 + 1]),
        queued: Number(res[i * 3]),
        scheduled: Number(res[i * 3 + 2]),
        capacity: this.config.queueCapacity,
        processed: Number(stats[`${q.name}:processed`] ?? 0),
        failed: Number(stats[`${q.name}:failed`] ?? 0),
      }));
    });
  }

  private key(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  private async withPositions(items: Job[], queued: { at: number; record: StoredRecord }[], nextCursor: string | null): Promise<JobList> {
    if (queued.length === 0) return { items, nextCursor };
    const pipeline = this.conns.cmd.pipeline();
    for (const { record } of queued) pipeline.zrank(this.key('wait', record.queue), record.id);
    const res = await pipeline.exec();
    queued.forEach(({ at }, i) => {
      const rank = res?.[i]?.[1];
      if (typeof rank === 'number' && items[at]!.state === 'queued') items[at] = { ...items[at]!, position: rank };
    });
    return { items, nextCursor };
  }
}
