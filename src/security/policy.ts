import { realpath } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, normalize } from 'node:path';
import { InvalidInput } from '../errors.js';
import { BUILTIN_RULES, type PolicyDecision } from '../schemas/policy.js';
import { hasScope, type Principal } from './auth.js';
import { serverUser, usableHome, type RunAsUser } from './identity.js';
import { choosesConfig, loadsCode } from './policy-env.js';
import { argsMatch, loadPolicy, type CompiledRule } from './policy-file.js';
import { checkProgram, DEFAULT_SEARCH_PATH, resolveExecutable } from '../runner/prepare.js';
import type { CheckedProgram, ResourceLimits, RunSpec } from '../runner/types.js';
import type { Grant } from '../spec/grant.js';

export type { Grant } from '../spec/grant.js';
export { loadPolicyFile, REST_ARGS } from './policy-file.js';

const SHELL = '/bin/sh';

/**
 * The command policy (EXECD_POLICY_FILE): which token may run what, where, as
 * whom and within which limits. `decide` is pure judgement; the gate
 * (policy-gate.ts) turns a refusal into 403 COMMAND_NOT_ALLOWED and applies
 * the grant to the RunSpec.
 *
 * Which rules apply to a token: the rules naming its id in `tokens`; if none
 * does, the rules naming one of its scopes in `scopes`; if none does, the
 * rules with neither. A command is allowed when one applicable rule allows
 * it (the first, in file order, gives the identity, cwd and ceilings). With a
 * policy file and no applicable rule, it is refused (`default-deny`).
 */

export interface Decision {
  allowed: boolean;
  rule: string;
  reasons: string[];
  grant: Grant | null;
}

export interface PolicyContext {
  /** PATH of the children's base environment: allowed executable names are resolved on it. */
  childPath: string;
  /** The runner's cwd when a spec gives none and no run-as user applies. */
  defaultCwd?: string | undefined;
  /** EXECD_RUN_AS, resolved. */
  defaultRunAs: RunAsUser | null;
}

const LONE_SURROGATE = /\p{Cs}/u;
const isWellFormed = (s: string) => !LONE_SURROGATE.test(s);

/** A string that is not well-formed UTF-16 (a lone surrogate) cannot reach a program byte for byte. */
function checkWellFormed(spec: RunSpec): void {
  const bad = (where: string, path: string) => {
    const message = 'contains a lone UTF-16 surrogate, which has no UTF-8 encoding';
    return new InvalidInput(`${where} ${message}`, [{ in: 'body', path, message }]);
  };
  spec.argv?.forEach((a, i) => {
    if (!isWellFormed(a)) throw bad(`argv[${i}]`, `/argv/${i}`);
  });
  if (spec.command !== undefined && !isWellFormed(spec.command)) throw bad('command', '/command');
  if (spec.cwd !== undefined && !isWellFormed(spec.cwd)) throw bad('cwd', '/cwd');
  for (const [k, v] of Object.entries(spec.env ?? {})) {
    if (!isWellFormed(k) || !isWellFormed(v)) throw bad(`env ${JSON.stringify(k)}`, '/env');
  }
}

const q = (s: string) => JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);

const inside = (path: string, root: string) => path === root || root === '/' || path.startsWith(root.endsWith('/') ? root : `${root}/`);

function minDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

function ceilLimits(asked: ResourceLimits | undefined, ceiling: ResourceLimits | undefined): ResourceLimits | undefined {
  if (!ceiling) return asked;
  const out: ResourceLimits = {};
  for (const k of ['cpuSeconds', 'memoryBytes', 'fileSizeBytes', 'openFiles', 'processes'] as const) {
    const v = minDefined(asked?.[k], ceiling[k]);
    if (v !== undefined) out[k] = v;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The program view of a spec: a shell command line (`command`, or argv `/bin/sh -c …`), or argv. */
function shellCommandOf(spec: RunSpec): string | undefined {
  if (spec.command !== undefined) return spec.command;
  const a = spec.argv!;
  if (a.length >= 3 && a[0] === SHELL && a[1] === '-c') return a[2];
  return undefined;
}

/** What checking a request against one rule found: the reasons it is refused (none: allowed), its cwd and program. */
interface RuleCheck {
  reasons: string[];
  cwd?: string;
  program?: CheckedProgram;
}

export class CommandPolicy {
  private rules: CompiledRule[] | null = null;
  private readonly server = serverUser();
  /** What the file in force may get wrong (policyWarnings): logged at start and after each reload. */
  warnings: string[] = [];

  constructor(
    private readonly file: string | undefined,
    private readonly ctx: PolicyContext,
  ) {
    if (file !== undefined) this.reload();
  }

  /** True when a policy file is in force. */
  get active(): boolean {
    return this.rules !== null;
  }

  get ruleCount(): number {
    return this.rules?.length ?? 0;
  }

  /** Re-read the policy file; on an error the rules in force stay and the ConfigError is thrown. */
  reload(): { rules: number } {
    if (this.file === undefined) return { rules: 0 };
    const loaded = loadPolicy(this.file);
    this.rules = loaded.rules;
    this.warnings = loaded.warnings;
    return { rules: this.rules.length };
  }

  /** Who a command runs as when no rule says otherwise. */
  get defaultRunAs(): RunAsUser {
    return this.ctx.defaultRunAs ?? this.server;
  }

  /** Would `principal` be allowed to run `spec`, under which rule, and with what. Throws 400 for ill-formed strings only. */
  async decide(principal: Principal, spec: RunSpec): Promise<Decision> {
    checkWellFormed(spec);
    const envKeys = Object.keys(spec.env ?? {});
    if (this.rules === null) {
      const loaders = envKeys.filter(loadsCode);
      if (loaders.length > 0) {
        return {
          allowed: false,
          rule: BUILTIN_RULES.codeLoadingEnv,
          reasons: loaders.map((k) => `env ${q(k)} makes programs load code; only a policy rule naming it allows it`),
          grant: null,
        };
      }
      const grant = await this.grantFor(null, spec, undefined, undefined);
      return { allowed: true, rule: BUILTIN_RULES.noPolicy, reasons: ['no EXECD_POLICY_FILE: every command is allowed'], grant };
    }
    const applicable = this.applicable(principal);
    if (applicable.length === 0) {
      return {
        allowed: false,
        rule: BUILTIN_RULES.defaultDeny,
        reasons: [`no rule of the policy applies to token ${q(principal.id)}`],
        grant: null,
      };
    }
    const reasons: string[] = [];
    for (const rule of applicable) {
      const failed = await this.check(rule, spec, envKeys);
      if (failed.reasons.length === 0) {
        const grant = await this.grantFor(rule, spec, failed.cwd, failed.program);
        return { allowed: true, rule: rule.name, reasons: [...reasons, `allowed by rule ${q(rule.name)}`], grant };
      }
      for (const r of failed.reasons) reasons.push(`rule ${q(rule.name)}: ${r}`);
    }
    return { allowed: false, rule: applicable[0]!.name, reasons, grant: null };
  }

  /** The decision in the API's shape (POST /v1/policy/explain). */
  explain(decision: Decision, spec: RunSpec): PolicyDecision {
    const g = decision.grant;
    const user = g?.user ?? this.server.name;
    return {
      allowed: decision.allowed,
      rule: decision.rule,
      reasons: decision.reasons,
      effective: g
        ? {
            uid: g.uid ?? this.server.uid,
            gid: g.gid ?? this.server.gid,
            user,
            cwd: g.cwd ?? spec.cwd ?? null,
            executable: g.program?.file ?? null,
            timeoutMs: g.timeoutMs ?? spec.timeoutMs ?? null,
            killGraceMs: g.killGraceMs ?? spec.killGraceMs,
            maxOutputBytes: g.maxOutputBytes ?? spec.maxOutputBytes,
            limits: g.limits ?? spec.limits ?? null,
          }
        : null,
    };
  }

  private applicable(principal: Principal): CompiledRule[] {
    const rules = this.rules!;
    const named = rules.filter((r) => r.tokens?.has(principal.id));
    if (named.length > 0) return named;
    const scoped = rules.filter((r) => r.scopes?.some((s) => hasScope(principal, s)));
    if (scoped.length > 0) return scoped;
    return rules.filter((r) => r.tokens === null && r.scopes === null);
  }

  private runAsFor(rule: CompiledRule | null): RunAsUser | null {
    const user = rule?.runAs ?? this.ctx.defaultRunAs;
    if (!user || (user.uid === this.server.uid && user.gid === this.server.gid)) return null;
    return user;
  }

  /** The cwd the runner would use for this spec under this rule. */
  private cwdFor(rule: CompiledRule | null, spec: RunSpec): string {
    if (spec.cwd !== undefined) return spec.cwd;
    const user = this.runAsFor(rule);
    if (user) return usableHome(user);
    return this.ctx.defaultCwd ?? homedir();
  }

  private async grantFor(
    rule: CompiledRule | null,
    spec: RunSpec,
    resolvedCwd: string | undefined,
    program: CheckedProgram | undefined,
  ): Promise<Grant> {
    const grant: Grant = { rule: rule?.name ?? BUILTIN_RULES.noPolicy };
    const user = this.runAsFor(rule);
    if (user) {
      grant.uid = user.uid;
      grant.gid = user.gid;
      grant.user = user.name;
      grant.home = user.home;
    }
    if (resolvedCwd !== undefined) grant.cwd = resolvedCwd;
    else if (spec.cwd === undefined && user) grant.cwd = usableHome(user);
    if (program) grant.program = program;
    // maxTimeoutMs bounds the whole life of the process: the timeout first, the SIGTERM grace in what is left.
    if (rule?.maxTimeoutMs !== undefined) {
      const timeoutMs = Math.min(spec.timeoutMs ?? rule.maxTimeoutMs, rule.maxTimeoutMs);
      const killGraceMs = Math.min(spec.killGraceMs, rule.maxTimeoutMs - timeoutMs);
      if (timeoutMs !== spec.timeoutMs) grant.timeoutMs = timeoutMs;
      if (killGraceMs !== spec.killGraceMs) grant.killGraceMs = killGraceMs;
    }
    if (rule?.maxOutputBytes !== undefined && rule.maxOutputBytes < spec.maxOutputBytes) grant.maxOutputBytes = rule.maxOutputBytes;
    if (rule?.maxAttempts !== undefined) grant.maxAttempts = rule.maxAttempts; // a job's retry.attempts is lowered to it (routes/jobs.ts)
    const limits = ceilLimits(spec.limits, rule?.limits);
    if (limits && rule?.limits) grant.limits = limits;
    return grant;
  }

  private async check(rule: CompiledRule, spec: RunSpec, envKeys: string[]): Promise<RuleCheck> {
    const reasons: string[] = [];
    const cwd = this.cwdFor(rule, spec);
    // The directory the runner will be in: argv[0] and relative PATH entries are resolved from it, as the kernel will.
    const realCwd = rule.cwd || rule.executables ? await realpath(cwd).catch(() => null) : null;
    const shellCommand = shellCommandOf(spec);
    let program: CheckedProgram | undefined;

    if (shellCommand !== undefined) {
      if (!rule.shell) reasons.push('shell commands are not allowed (the rule has no "shell: true")');
      else if (rule.commands && !rule.commands.some((g) => g.matches(shellCommand))) {
        reasons.push(`command ${q(shellCommand)} matches none of the rule's command patterns`);
      }
    } else {
      const argv = spec.argv!;
      if (rule.executables) {
        const checked = await this.checkExecutable(rule.executables, argv[0]!, spec, realCwd ?? cwd);
        if (typeof checked === 'string') reasons.push(checked);
        else program = checked;
      }
      if (rule.args && !rule.args.some((p) => argsMatch(p, argv.slice(1)))) {
        reasons.push(`the arguments of ${q(argv[0]!)} match none of the rule's args patterns`);
      }
    }

    if (spec.tty && !rule.tty) reasons.push('a terminal ("tty") is not allowed (the rule has no "tty: true")');

    if (rule.cwd) {
      if (realCwd === null) {
        reasons.push(`cwd ${q(cwd)} does not exist, so it cannot be shown to be inside the rule's directories`);
      } else {
        const roots = await Promise.all(rule.cwd.map((r) => realpath(r).catch(() => null)));
        if (!roots.some((r) => r !== null && inside(realCwd, r))) reasons.push(`cwd ${q(cwd)} is outside the rule's directories`);
      }
    }

    for (const key of envKeys) {
      if (loadsCode(key)) {
        if (!rule.envExact.has(key)) reasons.push(`env ${q(key)} makes programs load code and the rule's env does not name it`);
      } else if (rule.restricting && choosesConfig(key)) {
        if (!rule.envExact.has(key)) reasons.push(`env ${q(key)} chooses where programs read configuration or find programs, and the rule's env does not name it`);
      } else if (rule.env) {
        if (!rule.env.some((g) => g.matches(key))) reasons.push(`env ${q(key)} is not among the rule's env keys`);
      } else if (rule.restricting) {
        reasons.push(`env ${q(key)} is not named by the rule, which restricts what runs (its env lists the keys a request may set)`);
      }
    }
    const out: { reasons: string[]; cwd?: string; program?: CheckedProgram } = { reasons };
    if (realCwd !== null) out.cwd = realCwd;
    if (program) out.program = program;
    return out;
  }

  /**
   * argv[0] resolved as the runner will (the request's PATH, the cwd's realpath) against the
   * allowed executables resolved on the server's PATH now: the same path, or the same file
   * (realpath) under the same name (so /bin/true is /usr/bin/true, but a multi-call binary's
   * other names stay refused). Allowed: the file and its identity, which the runner runs (or
   * refuses when another file took its place); refused: why.
   */
  private async checkExecutable(allowed: string[], program: string, spec: RunSpec, cwd: string): Promise<CheckedProgram | string> {
    const path = spec.env?.PATH ?? (spec.envMode === 'replace' ? DEFAULT_SEARCH_PATH : this.ctx.childPath);
    let file: string;
    let checked: CheckedProgram;
    try {
      file = await resolveExecutable(program, path, cwd);
      checked = checkProgram(file, program);
    } catch {
      return `executable ${q(program)} was not found (or is not executable), so it is not one the rule allows`;
    }
    const real = await realpath(file).catch(() => file);
    for (const a of allowed) {
      let candidate: string;
      try {
        candidate = a.startsWith('/') ? normalize(a) : await resolveExecutable(a, this.ctx.childPath, '/');
      } catch {
        continue;
      }
      if (candidate === file) return checked;
      if (basename(candidate) === basename(file) && (await realpath(candidate).catch(() => candidate)) === real) return checked;
    }
    return `executable ${q(program)} is not one the rule allows`;
  }
}
