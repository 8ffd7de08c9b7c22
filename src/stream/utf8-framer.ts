/**
 * Cuts one stream's bytes into UTF-8 text frames without ever splitting a
 * character: the incomplete sequence at the end of a chunk (at most 3 bytes)
 * is held and leads the next frame. A frame's offset is the byte offset of its
 * first byte, and its text is the decoding of exactly the bytes up to the next
 * frame's offset (bytes that are not UTF-8 become U+FFFD, as everywhere in
 * execd's utf8 mode).
 */
export class Utf8Framer {
  private held: Buffer | null = null;
  private heldAt = 0;

  /** The whole characters of `data` (which starts at `offset`, right after what came before), or null when all of it is held. */
  push(offset: number, data: Buffer): { offset: number; bytes: Buffer } | null {
    let bytes = data;
    let start = offset;
    if (this.held !== null) {
      bytes = Buffer.concat([this.held, data]);
      start = this.heldAt;
      this.held = null;
    }
    const cut = incompleteTail(bytes);
    if (cut < bytes.length) {
      this.held = Buffer.from(bytes.subarray(cut)); // a copy: the log's chunk must not be pinned by 3 bytes
      this.heldAt = start + cut;
    }
    return cut === 0 ? null : { offset: start, bytes: cut === bytes.length ? bytes : bytes.subarray(0, cut) };
  }

  /** At the end of the stream: what is held (an incomplete sequence, which decodes to U+FFFD). */
  flush(): { offset: number; bytes: Buffer } | null {
    if (this.held === null) return null;
    const out = { offset: this.heldAt, bytes: this.held };
    this.held = null;
    return out;
  }

  /** Forget what is held (the viewer skips ahead); returns its offset, which is where the skipped range starts. */
  drop(): number | null {
    if (this.held === null) return null;
    this.held = null;
    return this.heldAt;
  }
}

/** Where a multi-byte sequence that the end of `bytes` cuts short begins; bytes.length when none is cut. */
export function incompleteTail(bytes: Buffer): number {
  const n = bytes.length;
  // Walk back over at most 3 continuation bytes (10xxxxxx) to the lead byte.
  let i = n - 1;
  while (i >= 0 && i >= n - 3 && (bytes[i]! & 0xc0) === 0x80) i--;
  if (i < 0) return n;
  const lead = bytes[i]!;
  const need = lead >= 0xf0 && lead <= 0xf4 ? 4 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xc2 && lead <= 0xdf ? 2 : 1;
  return n - i < need ? i : n;
}
