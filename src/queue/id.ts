import { randomFillSync } from 'node:crypto';

const HEX = Buffer.from('0123456789abcdef');
const POOL = Buffer.alloc(16 * 256);
let used = POOL.length;

/**
 * A random (v4) UUID as a flat string. crypto.randomUUID() builds its result
 * by concatenation, a tree of V8 cons-strings of about 480 bytes that a
 * queued job would keep; this one is 56 bytes.
 */
export function newJobId(): string {
  if (used === POOL.length) {
    randomFillSync(POOL);
    used = 0;
  }
  const r = POOL.subarray(used, (used += 16));
  r[6] = (r[6]! & 0x0f) | 0x40;
  r[8] = (r[8]! & 0x3f) | 0x80;
  const out = Buffer.allocUnsafe(36);
  let o = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) out[o++] = 0x2d;
    out[o++] = HEX[r[i]! >> 4]!;
    out[o++] = HEX[r[i]! & 15]!;
  }
  return out.toString('latin1');
}
