import { normalize } from 'node:path';
import { ConfigError } from '../config.js';
import type { ResourceLimits } from '../runner/types.js';
import { PolicyFile, type PolicyRule } from '../schemas/policy.js';
import { describeIssue, readSettingsFile } from './auth.js';
import { resolveRunAs, type RunAsUser } from './identity.js';
import { compileGlob, GlobSyntaxError, type Glob } from './policy-glob.js';

/** EXECD_POLICY_FILE read, checked and compiled into the rules CommandPolicy (policy.ts) judges with. */

interface ArgsPattern {
  globs: Glob[];
  /** The pattern ended with "...": any further arguments. */
  rest: boolean;
}

export interface CompiledRule {
  name: string;
  tokens: ReadonlySet<string> | null;
  scopes: PolicyRule['scopes'] | null;
  executables: string[] | null;
  args: ArgsPattern[] | null;
  shell: boolean;
  /** Allows a command on a pseudo-terminal. */
  tty: boolean;
  commands: Glob[] | null;
  cwd: string[] | null;
  env: Glob[] | null;
  envExact: ReadonlySet<string>;
  /** The rule limits what runs (executables, args or commands): env keys it does not name are refused. */
  restricting: boolean;
  maxTimeoutMs: number | undefined;
  maxOutputBytes: number | undefined;
  maxAttempts: number | undefined;
  runAs: RunAsUser | null;
  limits: ResourceLimits | undefined;
}

export const REST_ARGS = '...';

function compile(source: string, where: string): Glob {
  try {
    return compileGlob(source);
  } catch (err) {
    if (err instanceof GlobSyntaxError) throw new ConfigError(`${where}: ${err.message}`);
    throw err;
  }
}

function compileRule(rule: PolicyRule, path: string, index: number): CompiledRule {
  const where = `EXECD_POLICY_FILE ${path}: rules.${index} (${rule.name})`;
  return {
    name: rule.name,
    tokens: rule.tokens ? new Set(rule.tokens) : null,
    scopes: rule.scopes ?? null,
    executables: rule.executables ?? null,
    args:
      rule.args?.map((p, i) => {
        const rest = p.length > 0 && p[p.length - 1] === REST_ARGS;
        return { globs: (rest ? p.slice(0, -1) : p).map((g, j) => compile(g, `${where} args.${i}.${j}`)), rest };
      }) ?? null,
    shell: rule.shell ?? false,
    tty: rule.tty ?? false,
    commands: rule.commands?.map((g, i) => compile(g, `${where} commands.${i}`)) ?? null,
    cwd: rule.cwd?.map((c) => normalize(c)) ?? null,
    env: rule.env?.map((g, i) => compile(g, `${where} env.${i}`)) ?? null,
    envExact: new Set(rule.env ?? []),
    restricting: rule.executables !== undefined || rule.args !== undefined || rule.commands !== undefined,
    maxTimeoutMs: rule.maxTimeoutMs,
    maxOutputBytes: rule.maxOutputBytes,
    maxAttempts: rule.maxAttempts,
    runAs: rule.runAs === undefined ? null : resolveRunAs(rule.runAs, `${where} runAs`),
    limits: rule.limits,
  };
}

/** What a valid policy file may still get wrong: one line per rule, for the log at load. */
function policyWarnings(rules: PolicyRule[], path: string): string[] {
  const out: string[] = [];
  for (const r of rules) {
    if (r.shell && r.commands && !r.executables) {
      out.push(
        `EXECD_POLICY_FILE ${path}: rule "${r.name}" allows shell command lines by "commands" patterns and lists no "executables": ` +
          'a pattern does not confine a shell line ("echo *" also matches "echo x; rm -rf ~"); prefer argv rules with "executables" and "args"',
      );
    }
  }
  return out;
}

/** Read and compile EXECD_POLICY_FILE; throws ConfigError naming the file and the bad rule. */
export function loadPolicyFile(path: string): CompiledRule[] {
  return loadPolicy(path).rules;
}

export function loadPolicy(path: string): { rules: CompiledRule[]; warnings: string[] } {
  const parsed = PolicyFile.safeParse(readSettingsFile(path, 'EXECD_POLICY_FILE'));
  if (!parsed.success) throw new ConfigError(`EXECD_POLICY_FILE ${path}: ${describeIssue(parsed.error)}`);
  const names = new Set<string>();
  for (const r of parsed.data.rules) {
    if (names.has(r.name)) throw new ConfigError(`EXECD_POLICY_FILE ${path}: rule name "${r.name}" appears twice`);
    names.add(r.name);
  }
  return { rules: parsed.data.rules.map((r, i) => compileRule(r, path, i)), warnings: policyWarnings(parsed.data.rules, path) };
}

/** The arguments after argv[0] match one `args` pattern of a rule. */
export function argsMatch(p: ArgsPattern, args: string[]): boolean {
  if (p.rest ? args.length < p.globs.length : args.length !== p.globs.length) return false;
  return p.globs.every((g, i) => g.matches(args[i]!));
}
