import { InvalidInput } from '../errors.js';
import type { Encoding } from '../schemas/common.js';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decode request bytes; invalid base64 is a 400, never silently mangled. */
export function decodeBytes(value: string, encoding: Encoding, field: string): Buffer {
  if (encoding === 'utf8') return Buffer.from(value, 'utf8');
  if (!BASE64.test(value)) throw new InvalidInput(`${field} is not valid base64`, [{ in: 'body', path: `/${field}`, message: 'not valid base64' }]);
  return Buffer.from(value, 'base64');
}

/** Encode output bytes; utf8 replaces invalid sequences with U+FFFD (ask for base64 to get exact bytes). */
export const encodeBytes = (bytes: Buffer, encoding: Encoding): string => bytes.toString(encoding === 'utf8' ? 'utf8' : 'base64');
