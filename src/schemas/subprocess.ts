import { z } from 'zod';
import { MAX_TIMEOUT_MS } from './run.js';

/**
 * Bodies of /v1/subprocess/*: the keyword arguments of CPython's functions of
 * the same names, with Python's spelling (snake_case) and defaults.
 */

/** Python raises ValueError("embedded null byte") for these; here it is a 400. */
const noNul = (what: string) => z.string().refine((s) => !s.includes('\0'), { message: `${what} must not contain a NUL byte (Python: embedded null byte)` });

export const PyArgs = z
  .union([noNul('args').max(1 << 20), z.array(noNul('an argument')).min(1).max(65536)])
  .meta({
    id: 'PyArgs',
    description:
      'A string or a list of strings. Without `shell` a string is a program name with no arguments; with `shell` a string ' +
      "is the command line and a list runs ['/bin/sh', '-c', args[0], *args[1:]], as in Python.",
  });

export const PyEnv = z
  .record(
    noNul('environment variable names')
      .min(1)
      .max(4096)
      .regex(/^[^=]+$/, 'environment variable names must not contain "="'),
    noNul('environment values').max(1 << 20),
  )
  .meta({ id: 'PyEnv', description: "The child's whole environment, as Python's env=: it replaces the environment, nothing is added." });

const timeout = z
  .number()
  .positive()
  .max(MAX_TIMEOUT_MS / 1000)
  .meta({ description: 'Seconds, as in Python. Expiry is 422 TIMEOUT_EXPIRED. Without it the server default applies (EXECD_TIMEOUT_MS).' });
const cwd = noNul('cwd').min(1).max(4096).meta({ description: 'Working directory of the child.' });
const shell = z.boolean().meta({ description: 'Run through /bin/sh -c, as shell=True.' });
const text = z.boolean().meta({
  description: 'Text mode: output decoded as UTF-8 with universal newlines (\\r\\n and \\r become \\n), `input` taken as text. Without it output and input are base64.',
});
const input = z.string().meta({ description: 'Sent to stdin, then EOF: text when `text`, else base64. Without it stdin is empty (never inherited).' });

/** getoutput and getstatusoutput: `cmd` runs with shell=True, text mode, stderr merged into the output. */
export const GetoutputRequest = z
  .strictObject({ cmd: PyArgs })
  .meta({ id: 'GetoutputRequest', examples: [{ cmd: 'uname -a' }] });
export type GetoutputRequest = z.infer<typeof GetoutputRequest>;

export const CheckOutputRequest = z
  .strictObject({
    args: PyArgs,
    input: input.optional(),
    timeout: timeout.optional(),
    text: text.optional(),
    cwd: cwd.optional(),
    env: PyEnv.optional(),
    shell: shell.optional(),
    stderr: z
      .enum(['STDOUT', 'DEVNULL', 'PIPE'])
      .optional()
      .meta({
        description:
          '`STDOUT` merges stderr into the output (stderr=subprocess.STDOUT); absent or `DEVNULL` discards it; ' +
          '`PIPE` captures it for the CalledProcessError only, as Python does.',
      }),
  })
  .meta({ id: 'CheckOutputRequest', examples: [{ args: ['echo', 'hi'], text: true }] });
export type CheckOutputRequest = z.infer<typeof CheckOutputRequest>;

export const CallRequest = z
  .strictObject({ args: PyArgs, timeout: timeout.optional(), cwd: cwd.optional(), env: PyEnv.optional(), shell: shell.optional() })
  .meta({ id: 'CallRequest', examples: [{ args: ['true'] }] });
export type CallRequest = z.infer<typeof CallRequest>;

export const SubprocessRunRequest = z
  .strictObject({
    args: PyArgs,
    input: input.optional(),
    capture_output: z.boolean().optional().meta({ description: 'Capture stdout and stderr (otherwise both are discarded and null).' }),
    check: z.boolean().optional().meta({ description: 'A non-zero returncode is 422 COMMAND_FAILED (CalledProcessError).' }),
    timeout: timeout.optional(),
    text: text.optional(),
    cwd: cwd.optional(),
    env: PyEnv.optional(),
    shell: shell.optional(),
  })
  .meta({ id: 'SubprocessRunRequest', examples: [{ args: ['sh', '-c', 'echo out; echo err >&2; exit 2'], capture_output: true, text: true }] });
export type SubprocessRunRequest = z.infer<typeof SubprocessRunRequest>;

export const GetoutputResponse = z
  .object({ output: z.string().meta({ description: 'stdout and stderr, decoded, one trailing newline stripped.' }) })
  .meta({ id: 'GetoutputResponse' });

export const GetstatusoutputResponse = z
  .object({
    status: z.int().meta({ description: 'The exit status, or minus the signal number (Python 3.11).' }),
    output: z.string(),
  })
  .meta({ id: 'GetstatusoutputResponse' });

export const CheckOutputResponse = z
  .object({ output: z.string().meta({ description: 'stdout: text when `text`, else base64.' }) })
  .meta({ id: 'CheckOutputResponse' });

export const CallResponse = z
  .object({ returncode: z.int().meta({ description: 'The exit status, or minus the signal number.' }) })
  .meta({ id: 'CallResponse' });

export const CompletedProcess = z
  .object({
    args: z.union([z.string(), z.array(z.string())]).meta({ description: 'The args as given.' }),
    returncode: z.int(),
    stdout: z.string().nullable().meta({ description: 'Null unless captured; text when `text`, else base64.' }),
    stderr: z.string().nullable(),
  })
  .meta({ id: 'CompletedProcess' });
export type CompletedProcess = z.infer<typeof CompletedProcess>;
