import { z } from 'zod';
import { IsoTime } from './common.js';

/**
 * A decimal integer given in a URL (querystring or path), where everything
 * arrives as a string: digits only, no sign, no leading zeros, no exponent,
 * at most `max`; anything else is a 400, never coerced.
 */
function decimalId(min: 0 | 1, max: number, what: string) {
  const digits = min === 0 ? /^(0|[1-9]\d{0,9})$/ : /^[1-9]\d{0,9}$/;
  const message = `${what} must be an integer from ${min} to ${max}`;
  return z
    .string()
    .regex(digits, message)
    .transform((s, ctx) => {
      const n = Number(s);
      if (n > max) {
        ctx.addIssue({ code: 'custom', message });
        return z.NEVER;
      }
      return n;
    })
    .meta({ description: message });
}

/** Linux pids are at most 2^22 (PID_MAX_LIMIT); anything up to INT_MAX is a valid question. */
const MAX_PID = 2 ** 31 - 1;
const MAX_ID = 2 ** 32 - 1;

export const Process = z
  .object({
    pid: z.int(),
    ppid: z.int().meta({ description: 'Parent pid; 0 for the kernel\'s own roots.' }),
    pgid: z.int().meta({ description: 'Process group id.' }),
    uid: z.int().meta({ description: 'Real user id.' }),
    gid: z.int().meta({ description: 'Real group id.' }),
    state: z.string().meta({
      description: 'As in ps: R running, S sleeping, D uninterruptible wait, Z zombie, T stopped, t traced, I idle, X dead.',
    }),
    name: z.string().meta({ description: "The kernel's name for it (comm): the executable's basename, at most 15 bytes." }),
    argv: z.array(z.string()).meta({ description: 'Command line; empty for kernel threads and zombies.' }),
    rssBytes: z.int().meta({ description: 'Resident memory.' }),
    cpuMs: z.int().meta({ description: 'User plus system CPU time.' }),
    startedAt: IsoTime,
    execd: z.boolean().meta({ description: 'Started by this execd instance (its process group is one execd runs).' }),
    jobId: z.string().nullable().meta({ description: 'The execd job it belongs to; null for other processes and for synchronous runs.' }),
  })
  .meta({ id: 'Process', description: 'A process of the host as the OS tracks it (/proc).' });
export type Process = z.infer<typeof Process>;

export const ProcessList = z
  .object({ items: z.array(Process).meta({ description: 'Sorted by pid.' }) })
  .meta({ id: 'ProcessList' });
export type ProcessList = z.infer<typeof ProcessList>;

export const ProcessListQuery = z.strictObject({
  user: decimalId(0, MAX_ID, 'user').optional().meta({ description: 'Only processes with this real uid.' }),
  execd: z
    .enum(['true', 'false'])
    .transform((s) => s === 'true')
    .optional()
    .meta({ description: '`true`: only processes execd started; `false`: only the others.' }),
  pgid: decimalId(0, MAX_PID, 'pgid').optional().meta({ description: 'Only members of this process group.' }),
});
export type ProcessListQuery = z.output<typeof ProcessListQuery>;

export const ProcessParams = z.strictObject({
  pid: decimalId(1, MAX_PID, 'pid').meta({ description: 'A positive process id.' }),
});
