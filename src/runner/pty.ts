import { closeSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import { resizePty } from './native-helper.js';
import type { TtySize } from './types.js';

/** Waits before a write the terminal refused for want of room (EAGAIN) is tried again: the child reads late. */
const RETRY_MS = [5, 10, 20, 50, 100];

/**
 * What is typed at a pseudo-terminal: writes to the master (the native spawner's, non-blocking). A
 * net.Socket cannot take a tty fd (libuv would open it as a TTY handle and make writes blocking), so
 * each chunk is written here, and a full terminal (the line discipline holds about 4 KiB the child has
 * not read) is retried after a short wait: a write's callback comes once its bytes are in the terminal,
 * so the writer's back-pressure (RunHandle.stdinFlushed) holds as for a pipe.
 *
 * Its end writes nothing (a terminal has no end of input; a client types Ctrl-D, 0x04, for that) and
 * keeps the master open: the terminal closes with the run, or at hangup().
 */
export class PtyInput extends Writable {
  private fd: number;

  constructor(fd: number) {
    super({ decodeStrings: true });
    this.fd = fd;
  }

  /** TIOCSWINSZ: the kernel sends SIGWINCH to the terminal's foreground group. False once closed, or refused. */
  resize(size: TtySize): boolean {
    return this.fd >= 0 && resizePty(this.fd, size.cols, size.rows) === 0;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    let off = 0;
    let attempt = 0;
    const step = () => {
      while (off < chunk.length) {
        if (this.fd < 0) return callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
        try {
          off += writeSync(this.fd, chunk, off, chunk.length - off);
          attempt = 0;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return callback(err as Error);
          setTimeout(step, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]);
          return;
        }
      }
      callback();
    };
    step();
  }

  override _final(callback: (err?: Error | null) => void): void {
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
    callback(err);
  }
}
