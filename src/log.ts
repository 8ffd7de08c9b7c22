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
