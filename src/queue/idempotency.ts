import { createHash } from 'node:crypto';

/** JSON with object keys sorted, so that equal bodies give equal text whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What "the same body" means for Idempotency-Key: the same queue and the same spec, key order aside. */
export const requestDigest = (queue: string, spec: unknown): string =>
  createHash('sha256').update(canonicalJson({ queue, spec })).digest('base64url');
