/**
 * Every error the API can answer, with its HTTP status. Routes and plugins
 * throw `ApiError`s built from these codes; the parts below them throw
 * `DomainError`s, which plugins/errors.ts maps to these codes in one table.
 * The one error handler turns both (and Fastify's own errors) into
 * application/problem+json.
 */
export const ERROR_CODES = {
  VALIDATION_FAILED: { status: 400, title: 'Request validation failed' },
  UNAUTHORIZED: { status: 401, title: 'Missing or invalid bearer token' },
  FORBIDDEN: { status: 403, title: 'Forbidden' },
  COMMAND_NOT_ALLOWED: { status: 403, title: 'Command not allowed by policy' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  CONFLICT: { status: 409, title: 'Conflict' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  SPAWN_FAILED: { status: 422, title: 'The process could not be started' },
  COMMAND_FAILED: { status: 422, title: 'The command returned a non-zero exit status' },
  TIMEOUT_EXPIRED: { status: 422, title: 'The command timed out' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  INTERNAL: { status: 500, title: 'Internal server error' },
  QUEUE_FULL: { status: 503, title: 'Queue is full' },
  BACKEND_UNAVAILABLE: { status: 503, title: 'The queue backend is unreachable' },
  SHUTTING_DOWN: { status: 503, title: 'Server is shutting down' },
  RESOURCE_EXHAUSTED: { status: 503, title: 'The server is out of resources for now' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  [extra: string]: unknown;
}

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly extra: Record<string, unknown>;
  /** Seconds for a Retry-After header (429 and 503). */
  readonly retryAfter?: number;

  constructor(
    code: ErrorCode,
    detail: string,
    extra: Record<string, unknown> = {},
    options: { retryAfter?: number; cause?: unknown } = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ApiError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.extra = extra;
    if (options.retryAfter !== undefined) this.retryAfter = options.retryAfter;
    else if (this.status === 429 || this.status === 503) this.retryAfter = 1;
  }

  toProblem(): Problem {
    return problem(this.code, this.message, this.extra);
  }
}

export function problem(code: ErrorCode, detail: string, extra: Record<string, unknown> = {}): Problem {
  const { status, title } = ERROR_CODES[code];
  return {
    ...extra,
    type: `urn:execd:problem:${code.toLowerCase().replaceAll('_', '-')}`,
    title,
    status,
    detail,
    code,
  };
}

export const isApiError = (err: unknown): err is ApiError => err instanceof ApiError;

/**
 * A refusal or failure below the routes, in its own part's words: a stable
 * `code` (one per subclass) and the facts a client can act on (`details`,
 * answered beside the message), but no HTTP status. The one table beside the
 * error handler (`DOMAIN_ERRORS` in plugins/errors.ts) maps each code to an
 * API code; a subclass whose code has no row there does not compile.
 */
export abstract class DomainError extends Error {
  abstract readonly code: string;
  readonly details: Record<string, unknown>;
  /** Seconds after which trying again may succeed, when the cause is transient (else the API code's default). */
  readonly retryAfter?: number;

  constructor(message: string, details: Record<string, unknown> = {}, options: { retryAfter?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.details = details;
    if (options.retryAfter !== undefined) this.retryAfter = options.retryAfter;
  }
}

/** Where in the request a value was refused, and why (the problem's `errors`). */
export interface InputIssue {
  in: string;
  path: string;
  message: string;
}

/** A value the caller sent cannot be used as it is (400 VALIDATION_FAILED, with `errors` naming each field). */
export class InvalidInput extends DomainError {
  override name = 'InvalidInput';
  readonly code = 'VALIDATION_FAILED';
  constructor(message: string, errors: InputIssue[]) {
    super(message, { errors });
  }
}
