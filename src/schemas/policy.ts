import { z } from 'zod';
import { SCOPES } from './constants.js';
import { MAX_TIMEOUT_MS, ResourceLimits } from './run.js';

/** Names the policy gives its own decisions; a rule of the file may not take them. */
export const BUILTIN_RULES = {
  /** No EXECD_POLICY_FILE: every command is allowed (code-loading env keys aside). */
  noPolicy: 'no-policy',
  /** An env key that makes programs load code (LD_PRELOAD…) that no rule names. */
  codeLoadingEnv: 'code-loading-env',
  /** A policy file is set and none of its rules applies to the token. */
  defaultDeny: 'default-deny',
} as const;

const RuleName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$/, 'rule names are 1-64 of A-Z a-z 0-9 . _ : @ - (starting with a letter or digit)')
  .refine((n) => !(Object.values(BUILTIN_RULES) as string[]).includes(n), 'this rule name is reserved');

const Pattern = z.string().max(1024);

/** One rule of EXECD_POLICY_FILE. Absent fields do not restrict. */
export const PolicyRule = z.strictObject({
  name: RuleName,
  tokens: z.array(z.string().min(1)).optional(),
  scopes: z.array(z.enum(SCOPES)).optional(),
  executables: z.array(z.string().min(1).max(4096)).optional(),
  args: z.array(z.array(Pattern)).optional(),
  shell: z.boolean().optional(),
  tty: z.boolean().optional().meta({ description: 'Allows a command on a pseudo-terminal ("tty" in a CommandSpec); refused otherwise.' }),
  commands: z.array(Pattern).optional(),
  cwd: z.array(z.string().startsWith('/', 'cwd roots are absolute paths')).optional(),
  env: z.array(Pattern).optional(),
  maxTimeoutMs: z.int().min(1).max(MAX_TIMEOUT_MS).optional(),
  maxOutputBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  maxAttempts: z
    .int()
    .min(1)
    .max(100)
    .optional()
    .meta({ description: 'Most attempts (retries included) of a job this rule admits: a larger retry.attempts is lowered to it (docs/jobs.md).' }),
  runAs: z.string().min(1).optional(),
  limits: ResourceLimits.optional(),
});
export type PolicyRule = z.infer<typeof PolicyRule>;

export const PolicyFile = z.strictObject({ rules: z.array(PolicyRule) });
export type PolicyFile = z.infer<typeof PolicyFile>;

/** What the gate decided about a command, and what it will run with. */
export const PolicyDecision = z
  .object({
    allowed: z.boolean(),
    rule: z
      .string()
      .meta({
        description:
          `The rule that allowed the command, or the one that refused it: a rule name of EXECD_POLICY_FILE, or "${BUILTIN_RULES.noPolicy}", ` +
          `"${BUILTIN_RULES.codeLoadingEnv}" or "${BUILTIN_RULES.defaultDeny}".`,
      }),
    reasons: z.array(z.string()).meta({ description: 'Why, one line per check that failed (or what applied when allowed).' }),
    effective: z
      .object({
        uid: z.int(),
        gid: z.int(),
        user: z.string(),
        cwd: z.string().nullable().meta({ description: 'The working directory it runs in (null: the server default).' }),
        executable: z.string().nullable().meta({
          description:
            "The program file the rule's executables check resolved and allowed: it is what runs (if, when the run starts, it is still " +
            'the same file). Null for a shell command or when the rule does not restrict executables (argv[0] is resolved when it starts).',
        }),
        timeoutMs: z.int().nullable(),
        killGraceMs: z.int().meta({ description: 'The SIGTERM-to-SIGKILL grace; with maxTimeoutMs, timeoutMs + killGraceMs stays within it.' }),
        maxOutputBytes: z.int(),
        limits: ResourceLimits.nullable(),
      })
      .nullable()
      .meta({ description: 'When allowed: the identity, cwd, program file, timeout, kill grace, output cap and limits it would run with.' }),
  })
  .meta({ id: 'PolicyDecision' });
export type PolicyDecision = z.infer<typeof PolicyDecision>;
