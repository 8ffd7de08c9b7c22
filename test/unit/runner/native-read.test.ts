import { describe, expect, it } from 'vitest';
import { nativeSpawner } from '../../../src/runner/native.js';
import { nativeUnavailableReason } from '../../../src/runner/native-helper.js';
import type { SpawnOptions, StreamName } from '../../../src/runner/index.js';

/*
 * The addon's read side (native/channel.c on_pipe_event): a fast writer's pipe is read in large chunks
 * (FIONREAD-sized reads into their own Buffer, a 1 MiB pipe, a short rest between reads of a busy pipe),
 * exactly and in order; output that trickles still comes chunk by chunk, never held back.
 */
const unavailable = nativeUnavailableReason();
const required = process.env.EXECD_SPAWNER === 'native';

const options = (script: string): SpawnOptions => ({ file: '/bin/sh', argv: ['sh', '-c', script], cwd: '/', env: { PATH: '/usr/bin:/bin' }, stdin: 'ignore' });

async function collect(script: string): Promise<Record<StreamName, Buffer[]>> {
  const child = await nativeSpawner.spawn(options(script));
  const chunks: Record<StreamName, Buffer[]> = { stdout: [], stderr: [] };
  const output = child.readOutput((stream, chunk) => chunks[stream].push(chunk));
  await child.exited;
  await output.closed;
  return chunks;
}

describe.skipIf(unavailable !== null && !required)('native spawner: reading output pipes', () => {
  it('reads a fast writer exactly, in large chunks (not one per 8 KiB write), stdout and stderr apart', async () => {
    const size = 16 << 20;
    const chunks = await collect(`head -c ${size} /dev/zero; head -c 1000000 /dev/zero | tr '\\0' e >&2`);
    const out = Buffer.concat(chunks.stdout);
    expect(out.length).toBe(size);
    expect(out.equals(Buffer.alloc(size))).toBe(true);
    expect(Buffer.concat(chunks.stderr).equals(Buffer.alloc(1_000_000, 'e'))).toBe(true);
    // head writes 8 KiB at a time: one read per write would be 2048 chunks, reads of 64 KiB (a default pipe) 256.
    // 20-40 here; the bound is loose for a loaded machine.
    expect(chunks.stdout.length).toBeLessThan(size / (128 << 10));
    expect(Math.max(...chunks.stdout.map((c) => c.length))).toBeLessThanOrEqual(1 << 20);
  });

  it('output that trickles comes as it is written, each write its own chunk', async () => {
    const chunks = await collect('printf one; sleep 0.2; printf two; sleep 0.2; printf three');
    expect(chunks.stdout.map(String)).toEqual(['one', 'two', 'three']);
  });
});
