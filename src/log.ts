import type { FastifyBaseLogger } from 'fastify';

/** The keys LOG_REDACT (app.ts) censors at the top level of a line. */
export const FLAT_REDACT = ['env', 'stdin', 'input', 'token', 'tokens', 'sha256', 'authorization'];

/**
 * A child of `log` for the lines written once per request or job (audit,
 * `request completed`, `job finished`), whose fields are all flat: strings,
 * numbers, booleans, null, arrays of strings, or an object a serializer
 * reduces to such (`req`, `res`). It censors the same keys as LOG_REDACT at
 * the top level, but skips LOG_REDACT's wildcard paths (`*.env`, `*.*.env`…),
 * which pino's redaction runs on every key of every line: most of a line's
 * cost, the largest single cost of a request (docs/benchmarks.md). Never pass it a nested
 * object that could hold env values, stdin or a token.
 */
export function flatLogger(log: FastifyBaseLogger, bindings: Record<string, unknown> = {}): FastifyBaseLogger {
  return log.child(bindings, { redact: { paths: FLAT_REDACT, censor: '[redacted]' } });
}

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type LogFn = (...args: unknown[]) => void;
type Pino = FastifyBaseLogger & { isLevelEnabled(level: string): boolean };

/**
 * A request's `request.log` that makes its pino child (with the reqId binding) only when a line is written
 * through it. Most requests write none: their one line, the audit line or `request completed`, goes through
 * flatLogger with the reqId as a field (plugins/request-log.ts). A pino child per request was ~3 % of a
 * POST /v1/run's server CPU. Lines, levels and bindings are the child's exactly; a level that is off is
 * answered by the parent (the child has its level until someone sets another).
 */
class LazyChild {
  private made: Pino | null = null;

  constructor(
    private readonly parent: Pino,
    private readonly own: Record<string, unknown>,
    private readonly options: object,
  ) {}

  private real(): Pino {
    return (this.made ??= this.parent.child(this.own, this.options) as Pino);
  }

  private write(level: Level, args: unknown[]): void {
    if (this.made === null && !this.parent.isLevelEnabled(level)) return;
    (this.real()[level] as LogFn)(...args);
  }

  get level(): string {
    return (this.made ?? this.parent).level;
  }

  set level(level: string) {
    this.real().level = level;
  }

  isLevelEnabled(level: string): boolean {
    return (this.made ?? this.parent).isLevelEnabled(level);
  }

  fatal(...args: unknown[]): void {
    this.write('fatal', args);
  }

  error(...args: unknown[]): void {
    this.write('error', args);
  }

  warn(...args: unknown[]): void {
    this.write('warn', args);
  }

  info(...args: unknown[]): void {
    this.write('info', args);
  }

  debug(...args: unknown[]): void {
    this.write('debug', args);
  }

  trace(...args: unknown[]): void {
    this.write('trace', args);
  }

  silent(): void {}

  child(bindings: Record<string, unknown>, options?: object): FastifyBaseLogger {
    return this.real().child(bindings, options);
  }

  bindings(): Record<string, unknown> {
    return (this.real() as unknown as { bindings(): Record<string, unknown> }).bindings();
  }
}

/** Fastify's childLoggerFactory: request.log as a LazyChild; a route with its own log options gets a pino child at once. */
export function lazyChildLogger(logger: FastifyBaseLogger, bindings: Record<string, unknown>, options: object): FastifyBaseLogger {
  const plain = typeof (logger as { isLevelEnabled?: unknown }).isLevelEnabled === 'function' && Object.keys(options).length === 0;
  return plain ? (new LazyChild(logger as Pino, bindings, options) as unknown as FastifyBaseLogger) : logger.child(bindings, options);
}
