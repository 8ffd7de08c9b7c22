import type { FastifyBaseLogger } from 'fastify';
import { ConfigError, type Config } from '../config.js';
import { TokenStore } from './auth.js';
import { isRoot, resolveRunAs, type RunAsUser } from './identity.js';
import { flatLogger } from '../log.js';
import type { RunSpec } from '../runner/index.js';
import { admit, type Admitted } from './admission.js';
import type { Principal } from './auth.js';
import { CommandPolicy } from './policy.js';
import { RateLimiter } from './ratelimit.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Tokens, command policy, identity, rate limit and the audit log (see docs/security.md). */
    security: Security;
  }
}

/**
 * Everything execd decides about who may do what: built once per app from the
 * config (files are read now, so a bad one fails the start) and re-read by
 * `reload()` on SIGHUP.
 */
export class Security {
  readonly tokens: TokenStore;
  readonly policy: CommandPolicy;
  /** Per-token rate limit; null when EXECD_RATE_LIMIT is 0. */
  readonly rateLimit: RateLimiter | null;
  /** The one audit logger: every line has `event` and `tokenId`, and only flat fields (log.ts). */
  readonly audit: FastifyBaseLogger;
  /** EXECD_RUN_AS, resolved; null when unset. */
  readonly runAs: RunAsUser | null;
  /** Called after each reload that changed the tokens in force (open WebSockets are checked again). */
  private readonly tokenListeners: Array<() => void> = [];

  constructor(
    private readonly config: Pick<Config, 'runAs' | 'tokens' | 'tokensFile' | 'policyFile' | 'childPath' | 'rateLimitPerMinute'>,
    private readonly log: FastifyBaseLogger,
  ) {
    this.runAs = config.runAs === undefined ? null : resolveRunAs(config.runAs, 'invalid setting EXECD_RUN_AS');
    this.tokens = new TokenStore(config.tokens, config.tokensFile);
    this.policy = new CommandPolicy(config.policyFile, {
      childPath: config.childPath,
      defaultRunAs: this.runAs,
    });
    this.rateLimit = config.rateLimitPerMinute > 0 ? new RateLimiter(config.rateLimitPerMinute) : null;
    this.audit = flatLogger(log, { log: 'audit' });
  }

  /** The command policy's gate for `principal` running `spec` (admission.ts); `audit` gets what was decided. */
  admit(principal: Principal, spec: RunSpec, audit: Record<string, unknown>): Promise<Admitted> {
    return admit(this.policy, principal, spec, audit);
  }

  /** Re-read EXECD_TOKENS_FILE and EXECD_POLICY_FILE (SIGHUP). A file that fails keeps what was in force. */
  reload(): void {
    const loaders: Array<[string, () => Record<string, number>]> = [
      ['tokens', () => ({ tokens: this.tokens.reload().tokens })],
      ['policy', () => this.policy.reload()],
    ];
    for (const [what, load] of loaders) {
      try {
        const result = load();
        for (const w of what === 'tokens' ? this.tokens.warnings : this.policy.warnings) this.log.warn(w);
        this.audit.info({ event: 'reload', what, ...result }, `${what} reloaded`);
        if (what === 'tokens') for (const listener of this.tokenListeners) listener();
      } catch (err) {
        const message = err instanceof ConfigError ? err.message : 'unexpected error';
        this.log.error({ what, error: message }, `${what} not reloaded: the previous ones stay in force`);
      }
    }
  }

  /** Call `listener` after every successful tokens reload: a removed token, or a lost scope, reaches what is already open. */
  onTokensReloaded(listener: () => void): void {
    this.tokenListeners.push(listener);
  }

  /** The start-up lines about policy and identity (after the listen line). */
  logStartup(): void {
    for (const w of this.tokens.warnings) this.log.warn(w);
    if (this.policy.active) {
      this.log.info({ policyFile: this.config.policyFile, rules: this.policy.ruleCount }, 'command policy in force');
      for (const w of this.policy.warnings) this.log.warn(w);
    } else {
      this.log.info('no EXECD_POLICY_FILE: every command is allowed to holders of the run and jobs:write scopes (code-loading env keys aside)');
    }
    const who = this.policy.defaultRunAs;
    if (isRoot() && this.runAs === null) {
      this.log.warn('execd runs as root and EXECD_RUN_AS is unset: commands that no policy rule gives a runAs run as root');
    } else {
      this.log.info({ uid: who.uid, gid: who.gid, user: who.name }, 'commands run as this user unless a policy rule says otherwise');
    }
    if (this.rateLimit === null) this.log.info('EXECD_RATE_LIMIT is 0: no per-token rate limit');
  }
}
