import { z } from 'zod';
import { IsoTime } from './common.js';

/** Longest callback URL. */
export const MAX_NOTIFY_URL = 2048;

/** `notify` of a job request: where to POST the Job once it has ended (docs/notify.md). */
export const NotifyRequest = z
  .strictObject({
    url: z
      .string()
      .max(MAX_NOTIFY_URL)
      .refine((s) => {
        try {
          const u = new URL(s);
          return (u.protocol === 'https:' || u.protocol === 'http:') && u.username === '' && u.password === '' && u.hash === '';
        } catch {
          return false;
        }
      }, 'must be an absolute https:// (or http://) URL without credentials or fragment')
      .meta({
        description:
          'Where execd POSTs the Job once it has ended (after its last attempt). Its host must match EXECD_NOTIFY_ALLOW ' +
          '(empty: callbacks are off and a job asking for one is 403); http:// only for hosts listed with http://. See docs/notify.md.',
      }),
  })
  .meta({ id: 'NotifyRequest', examples: [{ url: 'https://hooks.example.com/execd' }] });
export type NotifyRequest = z.infer<typeof NotifyRequest>;

export const NOTIFY_STATES = ['pending', 'delivered', 'failed'] as const;
export type NotifyState = (typeof NOTIFY_STATES)[number];

export const NotifyStatus = z
  .object({
    url: z.string(),
    state: z.enum(NOTIFY_STATES).meta({
      description: 'pending until the callback is delivered (a 2xx answer) or given up (failed: attempts spent, a refusal, or the server stopped).',
    }),
    attempts: z.int().meta({ description: 'POSTs tried so far.' }),
    lastStatus: z.int().nullable().meta({ description: 'HTTP status of the last answer; null when none came (refused, network error, timeout).' }),
    lastError: z.string().nullable().meta({ description: 'Why the last try failed; null after a success or before any try.' }),
    deliveredAt: IsoTime.nullable(),
  })
  .meta({ id: 'NotifyStatus', description: 'The completion callback of a job that asked for one (`notify`).' });
export type NotifyStatus = z.infer<typeof NotifyStatus>;

/** The callback a stored spec asks for, if any (it travels in the spec, so both backends keep it with the job). */
export function notifyRequestOf(spec: object): NotifyRequest | undefined {
  const n = (spec as { notify?: unknown }).notify;
  return n !== null && typeof n === 'object' && typeof (n as NotifyRequest).url === 'string' ? (n as NotifyRequest) : undefined;
}

/** What a job shows before any delivery was recorded: pending when it asked for a callback, else null. */
export function initialNotify(spec: object): NotifyStatus | null {
  const request = notifyRequestOf(spec);
  return request ? { url: request.url, state: 'pending', attempts: 0, lastStatus: null, lastError: null, deliveredAt: null } : null;
}

export const NotifySecret = z
  .object({
    tokenId: z.string().meta({ description: 'The token whose jobs are signed with this secret.' }),
    secret: z.string().meta({
      description: 'The HMAC-SHA256 key of this token\'s callbacks: these 64 hex characters, used as ASCII bytes.',
    }),
    signatureHeader: z.literal('X-Execd-Signature'),
    format: z.string().meta({ description: 'How the header is built.' }),
  })
  .meta({ id: 'NotifySecret', description: 'What a callback receiver needs to check the signatures of this token\'s callbacks (docs/notify.md).' });
export type NotifySecret = z.infer<typeof NotifySecret>;
