/**
 * Every failure the client reports: an answer of the server (its problem+json: `status`, `code`, `detail`),
 * or no answer at all (`status` 0, `code` UNREACHABLE). `problem` is the whole body (errno, result, rule…).
 */
export class ExecdError extends Error {
  override readonly name = 'ExecdError';
  constructor(
    /** The HTTP status; 0 when the server could not be reached. */
    readonly status: number,
    /** The problem's `code` (VALIDATION_FAILED, NOT_FOUND…), UNREACHABLE, or PROTOCOL for an answer the client cannot read. */
    readonly code: string,
    readonly detail: string,
    readonly problem: Record<string, unknown> = {},
  ) {
    super(`${code}: ${detail}`);
  }

  /** The server answered no (4xx). */
  get refused(): boolean {
    return this.status >= 400 && this.status < 500;
  }

  /** Nothing answered, or the server could not do it now (5xx). */
  get unavailable(): boolean {
    return this.status === 0 || this.status >= 500;
  }
}

/** An error of fetch (connection refused, DNS, reset…) as one line. */
export function unreachable(url: string, err: unknown): ExecdError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
  return new ExecdError(0, 'UNREACHABLE', `cannot reach execd at ${url} (${why})`);
}

/** A Response that is not what was asked for, as an ExecdError carrying its problem+json when it has one. */
export async function errorFrom(res: Response): Promise<ExecdError> {
  const text = await res.text().catch(() => '');
  try {
    const problem = JSON.parse(text) as Record<string, unknown>;
    if (typeof problem.code === 'string') {
      const detail = typeof problem.detail === 'string' ? problem.detail : String(problem.title ?? res.statusText);
      return new ExecdError(res.status, problem.code, detail, problem);
    }
  } catch {
    // not JSON: said as it came, below
  }
  return new ExecdError(res.status, `HTTP_${res.status}`, text.trim().slice(0, 200) || res.statusText || `HTTP ${res.status}`);
}

export const isAbort = (err: unknown): boolean => (err as { name?: string } | null)?.name === 'AbortError';
