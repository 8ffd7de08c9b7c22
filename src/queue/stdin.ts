import type { RunHandle } from '../runner/index.js';

/** Per process: the last write queued to its stdin. */
const turns = new WeakMap<RunHandle, Promise<unknown>>();

/**
 * Write to a job's streamed stdin (null ends it), one write at a time per
 * process: each goes to the pipe once the one before is in it. However
 * many writers a job has (viewers, API nodes), at most one write waits beyond
 * the pipe's own buffer. Resolves true once the pipe has room again (a child
 * that reads late only slows the writer), false when its stdin is closed.
 */
export function writeStdinInTurn(handle: RunHandle, data: Buffer | null): Promise<boolean> {
  const turn = (turns.get(handle) ?? Promise.resolve()).then(async () => {
    if (data === null) {
      handle.endStdin();
      return true;
    }
    if (!handle.writeStdin(data)) return false;
    await handle.stdinFlushed();
    return true;
  });
  turns.set(handle, turn.catch(() => {}));
  return turn;
}
