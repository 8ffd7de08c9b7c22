import { jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { ERROR_CODES, problem, type ErrorCode } from './errors.js';

// The generated OpenAPI document, walked and patched as plain JSON (its shape is the OpenAPI spec's, not ours).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const STATUS_TEXT: Record<string, string> = { 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content' };

/** Every error code that answers with this status, for the response's description. */
function codesFor(status: string): string {
  return Object.entries(ERROR_CODES)
    .filter(([, v]) => String(v.status) === status)
    .map(([k]) => `\`${k}\``)
    .join(', ');
}

/** A realistic `detail` per code, for the error examples of each status (the real ones vary with the request). */
const SAMPLE_DETAIL: Partial<Record<ErrorCode, string>> = {
  VALIDATION_FAILED: 'body: give exactly one of "argv" and "command"',
  UNAUTHORIZED: 'send Authorization: Bearer <token>',
  FORBIDDEN: 'this needs the scope "run", which token "ci" does not hold',
  COMMAND_NOT_ALLOWED: 'not allowed by policy rule "default-deny": no rule of the policy applies to this token',
  NOT_FOUND: 'no job "0b5c1d7e-3f1a-4c2e-9d8b-6a4f2e1c9b70"',
  CONFLICT: 'job 0b5c1d7e-3f1a-4c2e-9d8b-6a4f2e1c9b70 is queued; only a running job can be signaled',
  PAYLOAD_TOO_LARGE: 'the request body is larger than the server accepts',
  UNSUPPORTED_MEDIA_TYPE: 'send the body as application/json',
  SPAWN_FAILED: "[Errno 2] No such file or directory: 'nosuchprogram'",
  COMMAND_FAILED: "Command '['false']' returned non-zero exit status 1.",
  TIMEOUT_EXPIRED: "Command '['sleep', '10']' timed out after 1.0 seconds",
  RATE_LIMITED: 'token "ci" is over EXECD_RATE_LIMIT (600 requests a minute)',
  INTERNAL: 'an unexpected error occurred; it has been logged',
  QUEUE_FULL: 'queue "default" already holds 10000 waiting jobs',
  BACKEND_UNAVAILABLE: 'the queue backend (redis) is unreachable; try again shortly',
  SHUTTING_DOWN: 'the server is draining: it takes no new work',
  RESOURCE_EXHAUSTED: 'the command could not be started now: the server is out of file descriptors; retry later',
};

/** Codes that only routes running a command answer. */
const COMMAND_CODES = new Set<string>(['COMMAND_NOT_ALLOWED', 'SPAWN_FAILED', 'COMMAND_FAILED', 'TIMEOUT_EXPIRED', 'RESOURCE_EXHAUSTED']);

/** One named example per error code this status can carry on this operation, each with its real code and status. */
function problemExamples(status: string, runsCommands: boolean): Json {
  const examples: Json = {};
  for (const [code, v] of Object.entries(ERROR_CODES)) {
    if (String(v.status) !== status || (COMMAND_CODES.has(code) && !runsCommands)) continue;
    const c = code as ErrorCode;
    examples[code] = { summary: v.title, value: problem(c, SAMPLE_DETAIL[c] ?? v.title) };
  }
  return examples;
}

/**
 * zod writes every z.int() with the bounds of a safe integer, which Swagger UI then offers as the
 * example value (-9007199254740991). Those bounds say nothing to a reader: drop them, keep real ones.
 */
function dropSafeIntegerBounds(node: unknown): void {
  if (Array.isArray(node)) node.forEach(dropSafeIntegerBounds);
  else if (node && typeof node === 'object') {
    const obj = node as Json;
    if (obj.minimum === Number.MIN_SAFE_INTEGER) delete obj.minimum;
    if (obj.maximum === Number.MAX_SAFE_INTEGER) delete obj.maximum;
    for (const v of Object.values(obj)) dropSafeIntegerBounds(v);
  }
}

function collectRefs(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) node.forEach((n) => collectRefs(n, into));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') into.add(v.replace('#/components/schemas/', ''));
      else collectRefs(v, into);
    }
  }
}

function renameRefs(node: unknown, from: string, to: string): void {
  if (Array.isArray(node)) node.forEach((n) => renameRefs(n, from, to));
  else if (node && typeof node === 'object') {
    const obj = node as Json;
    for (const [k, v] of Object.entries(obj)) {
      if (k === '$ref' && v === `#/components/schemas/${from}`) obj[k] = `#/components/schemas/${to}`;
      else renameRefs(v, from, to);
    }
  }
}

/**
 * zod-type-provider's document, tidied: errors declared as application/problem+json,
 * responses described, and the input/output twins of each schema reduced to the one in use.
 */
export const transformOpenApi: typeof jsonSchemaTransformObject = (input) => {
  const doc = jsonSchemaTransformObject(input) as Json;
  for (const [path, ops] of Object.entries<Json>(doc.paths ?? {})) {
    for (const [method, op] of Object.entries<Json>(ops)) {
      const runsCommands = method === 'post' && /^\/v1\/(run|subprocess\/|jobs$|policy\/)/.test(path);
      for (const [status, res] of Object.entries<Json>(op.responses ?? {})) {
        if (Number(status) >= 400 && res.content?.['application/json']) {
          res.content = { 'application/problem+json': { ...res.content['application/json'], examples: problemExamples(status, runsCommands) } };
          res.description = `Problem: ${codesFor(status) || 'error'}`;
        } else if (res.description === 'Default Response') {
          res.description = STATUS_TEXT[status] || 'Response';
        }
      }
    }
  }
  dropSafeIntegerBounds(doc);
  // Prune the schema variants no operation refers to (transitively).
  const schemas: Json = doc.components?.schemas ?? {};
  const used = new Set<string>();
  collectRefs(doc.paths, used);
  let grew = true;
  while (grew) {
    const before = used.size;
    for (const name of [...used]) collectRefs(schemas[name], used);
    grew = used.size > before;
  }
  for (const name of Object.keys(schemas)) if (!used.has(name)) delete schemas[name];
  for (const name of Object.keys(schemas)) {
    const base = name.replace(/Input$/, '');
    if (base !== name && !schemas[base]) {
      schemas[base] = schemas[name];
      delete schemas[name];
      renameRefs(doc, name, base);
    }
  }
  doc.components.schemas = Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b)));
  return doc as ReturnType<typeof jsonSchemaTransformObject>;
};
