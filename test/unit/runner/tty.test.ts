import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config.js';
import { checkTtySupport, childProcessSpawner } from '../../../src/runner/index.js';
import { encodeRequest, type HelperRequest } from '../../../src/runner/native-addon.js';
import { buildEnv } from '../../../src/runner/prepare.js';
import type { RunSpec } from '../../../src/runner/types.js';
import { CommandSpec } from '../../../src/schemas/run.js';
import { toJobRunSpec, toRunSpec } from '../../../src/spec/run-spec.js';

const config = parseConfig({});
const sync = (body: object) => toRunSpec(CommandSpec.parse(body), config, { timeoutMs: undefined, allowStreamStdin: false });
const job = (body: object) => toJobRunSpec(CommandSpec.parse(body), config);

describe('the tty field, translated', () => {
  it('true is 80x24; a size is taken as given; stderr is merged; false and absent are no terminal', () => {
    expect(sync({ argv: ['x'], tty: true })).toMatchObject({ tty: { cols: 80, rows: 24 }, mergeStderr: true });
    expect(sync({ argv: ['x'], tty: { cols: 200, rows: 50 } }).tty).toEqual({ cols: 200, rows: 50 });
    expect(sync({ argv: ['x'], tty: false })).not.toHaveProperty('tty');
    expect(sync({ argv: ['x'] })).toMatchObject({ mergeStderr: false });
  });

  it("a job's terminal has a streamed stdin unless bytes were given; a sync run's only the bytes", () => {
    expect(job({ argv: ['x'], tty: true }).stdin).toBe('stream');
    expect(job({ argv: ['x'], tty: true, stdin: 'ls\n' }).stdin).toEqual(Buffer.from('ls\n'));
    expect(sync({ argv: ['x'], tty: true }).stdin).toBeUndefined();
    expect(job({ argv: ['x'] }).stdin).toBeUndefined();
  });

  it('refuses sizes out of 1-10000, other shapes and extra keys (400 at the route)', () => {
    for (const tty of [{ cols: 0, rows: 24 }, { cols: 80, rows: 10_001 }, { cols: 80 }, { cols: 1.5, rows: 2 }, { cols: 80, rows: 24, x: 1 }, 'yes', 1]) {
      expect(CommandSpec.safeParse({ argv: ['x'], tty }).success, JSON.stringify(tty)).toBe(false);
    }
  });
});

describe('the terminal environment', () => {
  const base: RunSpec = { argv: ['x'], envMode: 'add', mergeStderr: true, killGraceMs: 0, maxOutputBytes: 1 };
  const ctx = { childPath: '/bin' };
  it('TERM is xterm-256color on a terminal, dumb without; the request\'s TERM wins', () => {
    expect(buildEnv({ ...base, tty: { cols: 1, rows: 1 } }, ctx).TERM).toBe('xterm-256color');
    expect(buildEnv(base, ctx).TERM).toBe('dumb');
    expect(buildEnv({ ...base, tty: { cols: 1, rows: 1 }, env: { TERM: 'vt100' } }, ctx).TERM).toBe('vt100');
  });
});

describe('the helper request frame', () => {
  const request: HelperRequest = { file: '/bin/sh', argv: ['sh'], env: { A: 'b' }, cwd: '/', stdinPipe: false, mergeStderr: false };

  it('without tty it is the frame it always was: six header words, then the strings', () => {
    const f = encodeRequest(7, request);
    expect(f.readUInt32LE(0)).toBe(f.length - 4);
    expect([4, 8, 12, 16, 20, 24].map((o) => f.readUInt32LE(o))).toEqual([7, 0, 0, 0, 1, 1]);
    expect(f.subarray(28).toString()).toBe('/bin/sh\0/\0sh\0A=b\0');
  });

  it('with tty: flag 16 and two more words (cols, rows) before the strings', () => {
    const f = encodeRequest(7, { ...request, tty: { cols: 132, rows: 50 } });
    expect(f.readUInt32LE(0)).toBe(f.length - 4);
    expect(f.readUInt32LE(8)).toBe(16);
    expect([f.readUInt32LE(28), f.readUInt32LE(32)]).toEqual([132, 50]);
    expect(f.subarray(36).toString()).toBe('/bin/sh\0/\0sh\0A=b\0');
  });
});

describe('spawners', () => {
  it('child_process refuses a terminal (SPAWN_FAILED, ENOTSUP) before anything runs; no tty, no refusal', async () => {
    expect(() => checkTtySupport(childProcessSpawner, { tty: { cols: 1, rows: 1 } })).toThrow(/needs the native spawner/);
    expect(() => checkTtySupport(childProcessSpawner, {})).not.toThrow();
    expect(() => checkTtySupport({ tty: true }, { tty: { cols: 1, rows: 1 } })).not.toThrow();
    const options = { file: '/bin/true', argv: ['true'], cwd: '/', env: {}, stdin: 'ignore' as const, tty: { cols: 1, rows: 1 } };
    await expect(childProcessSpawner.spawn(options)).rejects.toMatchObject({ code: 'SPAWN_FAILED', errno: 'ENOTSUP' });
  });
});
