import type { RunSpec } from '../runner/types.js';
import type { Principal } from './auth.js';
import { CommandNotAllowed } from './errors.js';
import { applyGrant, type Grant } from '../spec/grant.js';
import type { CommandPolicy, Decision } from './policy.js';

export { applyGrant, type Grant } from '../spec/grant.js';

/** What admission asks of the command policy. */
export type PolicyJudge = Pick<CommandPolicy, 'decide' | 'defaultRunAs'>;

/** An admitted command: the RunSpec it runs (the grant applied) and the grant, which a job keeps until it starts. */
export interface Admitted {
  spec: RunSpec;
  grant: Grant;
}

/**
 * The one gate every command passes before it runs: the command policy, the
 * code-loading env rule, and identity (run-as user, cwd, ceilings). Sync runs
 * and job submissions pass it (Security.admit); a job keeps the grant and
 * `applyGrant` applies it again when the job starts.
 *
 * Throws CommandNotAllowed naming the rule, or InvalidInput for strings that
 * cannot reach a program byte for byte. Fills `audit` with what it decided, either way.
 */
export async function admit(policy: PolicyJudge, principal: Principal, spec: RunSpec, audit: Record<string, unknown>): Promise<Admitted> {
  const decision = await policy.decide(principal, spec);
  Object.assign(audit, commandAudit(spec, decision, policy.defaultRunAs));
  if (!decision.allowed || !decision.grant) throw notAllowed(decision);
  return { spec: applyGrant(spec, decision.grant), grant: decision.grant };
}

/** CommandNotAllowed naming the rule; `reasons` carry every failed check. */
export function notAllowed(decision: Pick<Decision, 'rule' | 'reasons'>): CommandNotAllowed {
  const first = decision.reasons[0] ?? 'refused';
  return new CommandNotAllowed(`not allowed by policy rule "${decision.rule}": ${first}`, {
    rule: decision.rule,
    reasons: decision.reasons,
  });
}

/**
 * What the audit line says about a command: never env values or stdin. Built
 * key by key: V8's spread of a conditional literal cost more here (docs/benchmarks.md).
 */
export function commandAudit(spec: RunSpec, decision: Decision, fallback: { uid: number; gid: number }): Record<string, unknown> {
  const g = decision.grant;
  const out: Record<string, unknown> = spec.command !== undefined ? { command: spec.command } : { argv: spec.argv };
  out.cwd = g?.cwd ?? spec.cwd ?? null;
  out.envKeys = spec.env ? Object.keys(spec.env) : [];
  out.uid = g?.uid ?? fallback.uid;
  out.gid = g?.gid ?? fallback.gid;
  out.rule = decision.rule;
  out.allowed = decision.allowed;
  if (spec.tty) out.tty = { cols: spec.tty.cols, rows: spec.tty.rows }; // the terminal's size; never what is typed
  return out;
}
