import type { CheckedProgram, ResourceLimits, RunSpec } from '../runner/types.js';

/**
 * What the command policy gives a run it allows (security/admission.ts):
 * JSON-able, so a job can keep it until it starts.
 */
export interface Grant {
  rule: string;
  /** Set when the command runs as a user other than the server's. */
  uid?: number;
  gid?: number;
  user?: string;
  home?: string;
  /**
   * The working directory: its realpath when the rule checked the cwd or the executable (the
   * directory the checks saw), else the run-as user's home when none was given.
   */
  cwd?: string;
  /** The program file the rule's executables check resolved and allowed: it runs, if still the same file (runner/prepare.ts). */
  program?: CheckedProgram;
  timeoutMs?: number;
  /** Lowered so that timeoutMs + killGraceMs stays within the rule's maxTimeoutMs. */
  killGraceMs?: number;
  maxOutputBytes?: number;
  limits?: ResourceLimits;
  /** The rule's maxAttempts: a job's retry.attempts is lowered to it when it is queued. */
  maxAttempts?: number;
}

/** The RunSpec a grant runs: its user, cwd, checked program file, ceilings and limits over what was asked. */
export function applyGrant(spec: RunSpec, grant: Grant): RunSpec {
  const out: RunSpec = { ...spec };
  if (grant.uid !== undefined) out.uid = grant.uid;
  if (grant.gid !== undefined) out.gid = grant.gid;
  if (grant.home !== undefined) out.home = grant.home;
  if (grant.cwd !== undefined) out.cwd = grant.cwd;
  if (grant.program !== undefined) out.program = grant.program;
  if (grant.timeoutMs !== undefined) out.timeoutMs = grant.timeoutMs;
  if (grant.killGraceMs !== undefined) out.killGraceMs = grant.killGraceMs;
  if (grant.maxOutputBytes !== undefined) out.maxOutputBytes = grant.maxOutputBytes;
  if (grant.limits !== undefined) out.limits = grant.limits;
  return out;
}
