import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Connections } from './connections.js';
import { OutputMirror, Tailer } from './output.js';

/** A mirror nobody has read for this long is dropped (it is made again on the next read). */
const MIRROR_IDLE_MS = 30_000;

/**
 * An API node's local copies of job output (memory, then a file in its own
 * directory), fed by one blocking XREAD connection: readers get the same byte
 * offsets as with the memory backend.
 */
export class Mirrors {
  private readonly byId = new Map<string, OutputMirror>();
  private readonly tailer: Tailer;
  private readonly dir: string;

  constructor(
    private readonly conns: Connections,
    private readonly prefix: string,
    filesDir: string,
    private readonly memoryBytes: number,
    private readonly log: FastifyBaseLogger,
  ) {
    this.dir = join(filesDir, 'mirror');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 }); // at start, inside the instance's private directory
    const tail = conns.open('tail', conns.patient);
    this.tailer = new Tailer(tail, conns.cmd, (err) => conns.redisError(err, 'tail'));
  }

  /** The job's output, caught up with what Redis holds; undefined for an unknown job. */
  async output(id: string): Promise<OutputMirror | undefined> {
    let mirror = this.byId.get(id);
    if (!mirror) {
      const state = await this.conns.call(() => this.conns.cmd.hget(`${this.prefix}:job:${id}`, 'state'));
      if (state === null) return undefined;
      mirror = this.byId.get(id); // made by a concurrent reader meanwhile
      if (!mirror) {
        mirror = new OutputMirror(this.conns.cmd, this.prefix, id, this.dir, this.memoryBytes, (err, stream) =>
          this.log.warn({ err, jobId: id, stream }, 'job output could not be kept on this node; the rest of the stream is dropped'),
        );
        this.byId.set(id, mirror);
      }
    }
    mirror.lastUsed = Date.now();
    try {
      await this.conns.call(() => mirror.ready);
    } catch (err) {
      this.drop(id);
      throw err;
    }
    if (!mirror.disposed && !(mirror.closed('stdout') && mirror.closed('stderr'))) this.tailer.follow(mirror);
    return mirror;
  }

  drop(id: string): void {
    const mirror = this.byId.get(id);
    if (!mirror) return;
    this.byId.delete(id);
    this.tailer.unfollow(mirror);
    mirror.dispose();
  }

  dropIdle(now = Date.now()): void {
    for (const [id, mirror] of this.byId) {
      if (!mirror.inUse && now - mirror.lastUsed > MIRROR_IDLE_MS) this.drop(id);
    }
  }

  close(): void {
    this.tailer.close();
    for (const id of [...this.byId.keys()]) this.drop(id);
  }

  removeFiles(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
