import { randomFillSync } from 'node:crypto';

const HEX = Buffer.from('0123456789abcdef');
const POOL = Buffer.alloc(16 * 256);
/** The id's text is written here, then copied out as a string: no Buffer (nor subarray view) per id. */
const OUT = Buffer.alloc(36);
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
  const at = used;
  used += 16;
  POOL[at + 6] = (POOL[at + 6]! & 0x0f) | 0x40;
  POOL[at + 8] = (POOL[at + 8]! & 0x3f) | 0x80;
  let o = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) OUT[o++] = 0x2d;
    const b = POOL[at + i]!;
    OUT[o++] = HEX[b >> 4]!;
    OUT[o++] = HEX[b & 15]!;
  }
  return OUT.toString('latin1');
}
