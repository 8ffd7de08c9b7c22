/** Bytes and base64 without Node's Buffer, so that a browser bundle needs nothing more. */

export function fromBase64(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function toBase64(bytes: Uint8Array): string {
  let bin = '';
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) bin += String.fromCharCode(...bytes.subarray(i, i + step));
  return btoa(bin);
}

const utf8 = new TextEncoder();
/** The bytes of a RunResult's `stdout` or `stderr`, whichever encoding it came in. */
export function outputBytes(data: string, encoding: 'utf8' | 'base64' | undefined): Uint8Array {
  return encoding === 'base64' ? fromBase64(data) : utf8.encode(data);
}

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
