import { describe, expect, it } from 'vitest';
import { toProblem } from '../../../src/plugins/errors.js';

/** A system error as Node throws it (fs, process.memoryUsage, sockets). */
const systemError = (code: string) => Object.assign(new Error(`${code}: something, uv_resident_set_memory`), { code, errno: -24, syscall: 'uv_resident_set_memory' });

describe('toProblem', () => {
  it('answers a system call that met the descriptor limit as 503 RESOURCE_EXHAUSTED with Retry-After, not 500', () => {
    for (const code of ['EMFILE', 'ENFILE']) {
      const { body, retryAfter } = toProblem(systemError(code));
      expect(body).toMatchObject({ status: 503, code: 'RESOURCE_EXHAUSTED' });
      expect(body.detail).toContain(code);
      expect(body.detail).not.toContain('uv_'); // no internals
      expect(retryAfter).toBe(1);
    }
  });

  it('still answers any other unexpected error as 500 INTERNAL, without its message', () => {
    const { body, retryAfter } = toProblem(systemError('EIO'));
    expect(body).toMatchObject({ status: 500, code: 'INTERNAL' });
    expect(body.detail).not.toContain('EIO');
    expect(retryAfter).toBeUndefined();
  });
});
