import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../errors.js';

export const Problem = z
  .looseObject({
    type: z.string(),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    code: z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details; `code` is machine-readable.' });

/** Problem responses for the given statuses, to declare every status a route can answer. */
export function problems(...statuses: number[]): Record<number, typeof Problem> {
  return Object.fromEntries(statuses.map((s) => [s, Problem]));
}

/** Statuses every authenticated /v1 route can answer. */
export const V1_ERRORS = [400, 401, 403, 413, 415, 429, 500, 503] as const;

export const Encoding = z.enum(['utf8', 'base64']);
export type Encoding = z.infer<typeof Encoding>;

export const IsoTime = z.string().meta({ format: 'date-time' });
