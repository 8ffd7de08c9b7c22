import type { FastifyContextConfig, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import { bearerToken, hasScope, type Principal, type Scope } from '../security/auth.js';
import { originAllowed, originRefusal } from './origin.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    /** Facts for this request's audit line (command, cwd, uid, rule, outcome…); never env values or stdin. */
    audit: Record<string, unknown>;
  }
  interface FastifyContextConfig {
    /**
     * The scope a route needs (any one of a list). A /v1 route that declares
     * none needs `admin`: a route added without thinking is closed, not open.
     */
    scope?: Scope | readonly Scope[];
  }
}

/** Audit events by operationId; other routes needing run, jobs:write or admin are audited under their operationId. */
const AUDIT_EVENTS: Record<string, string> = {
  run: 'run',
  subprocessGetoutput: 'run',
  subprocessGetstatusoutput: 'run',
  subprocessCheckOutput: 'run',
  subprocessCall: 'run',
  subprocessRun: 'run',
  submitJob: 'job.submit',
  cancelJob: 'job.cancel',
  signalJob: 'job.signal',
  deleteJob: 'job.delete',
};
const AUDITED_SCOPES: ReadonlySet<Scope> = new Set(['run', 'jobs:write', 'admin']);

const scopesOf = (config: FastifyContextConfig): readonly Scope[] => {
  const s = config.scope;
  return s === undefined ? ['admin'] : typeof s === 'string' ? [s] : s;
};

/**
 * A browser cannot set headers on a WebSocket, but it does send Origin: a
 * page of another site must not open one with a token it learned. Non-browser
 * clients send no Origin and are not affected.
 */
function crossOriginUpgrade(request: FastifyRequest): boolean {
  if (request.headers.upgrade?.toLowerCase() !== 'websocket') return false;
  const origin = request.headers.origin;
  if (origin === undefined || origin === 'null') return origin === 'null';
  try {
    return new URL(origin).host.toLowerCase() !== (request.headers.host ?? '').toLowerCase();
  } catch {
    return true;
  }
}

/** nginx's "client closed request": the answer of a request whose client went away before it (never sent). */
const CLIENT_CLOSED = 499;

function outcome(request: FastifyRequest, status: number): string {
  if (status === CLIENT_CLOSED) return 'abandoned';
  if (status < 400) return 'ok';
  if (status === 401) return 'unauthorized';
  if (status === 403) return request.audit.allowed === false ? 'denied' : 'forbidden';
  if (status === 429) return 'rate_limited';
  if (status >= 500) return 'error';
  if (status === 422) return 'failed';
  return 'refused';
}

function auditResponse(scope: FastifyInstance, request: FastifyRequest, reply: FastifyReply, status = reply.statusCode): void {
  if (request.auditLogged) return;
  const route = request.routeOptions; // a getter that builds a new object: read once
  const operationId = (route.schema as { operationId?: string } | undefined)?.operationId;
  const audited = operationId !== undefined
    && (AUDIT_EVENTS[operationId] !== undefined || scopesOf(route.config).some((s) => AUDITED_SCOPES.has(s)));
  if (!audited && status !== 401 && status !== 403) return;
  const params = request.params as { id?: unknown } | undefined;
  const body = request.body as { signal?: unknown } | undefined;
  const event = audited ? (AUDIT_EVENTS[operationId] ?? operationId) : status === 401 ? 'auth.failed' : 'forbidden';
  // One flat line (log.ts): the request's audit facts are strings, numbers, booleans and string arrays.
  const line: Record<string, unknown> = {
    event,
    tokenId: request.principal?.id ?? null,
    reqId: request.id,
    method: request.method,
    route: route.url ?? null,
  };
  if (typeof params?.id === 'string') line.jobId = params.id;
  if (operationId === 'signalJob' && typeof body?.signal === 'string') line.signal = body.signal.slice(0, 32);
  Object.assign(line, request.audit);
  line.status = status;
  line.outcome = outcome(request, status);
  line.responseTime = reply.elapsedTime;
  if (!audited) line.ip = request.ip;
  scope.security.audit.info(line, event);
  request.auditLogged = true; // the audit line is this request's completion line (plugins/request-log.ts)
}

/**
 * The audit line of a request whose client closed the connection before the answer (a sync run it
 * abandoned, whose process tree was killed): Fastify runs no onResponse hook for it, and every run is
 * one audit line. Status 499, outcome "abandoned"; at most once per request.
 */
export function auditAbandoned(request: FastifyRequest, reply: FastifyReply): void {
  if (reply.raw.writableFinished || !request.raw.socket?.destroyed) return;
  if (request.audit === null) request.audit = {};
  auditResponse(request.server, request, reply, CLIENT_CLOSED);
}

/**
 * Bearer-token auth, per-token rate limit and scopes for every route of the
 * scope it is called in (all of /v1), and the audit line of each action.
 */
export function registerAuth(scope: FastifyInstance): void {
  if (!scope.hasRequestDecorator('principal')) scope.decorateRequest('principal', null);
  if (!scope.hasRequestDecorator('audit')) scope.decorateRequest('audit', null as unknown as Record<string, unknown>);
  if (!scope.hasRequestDecorator('auditLogged')) scope.decorateRequest('auditLogged', false);

  // Callback hooks, not async ones: every /v1 request passes both, and a promise each is a cost for
  // nothing. Fastify's hook runner turns a throw into the request's error, as a rejection would be.
  scope.addHook('onRequest', (request, _reply, done) => {
    authorize(scope, request);
    done();
  });

  scope.addHook('onResponse', (request, reply, done) => {
    if (request.audit === null) request.audit = {};
    auditResponse(scope, request, reply);
    done();
  });
}

/** Who is asking (bearer token), within the rate limit, holding a scope the route needs; throws ApiError otherwise. */
function authorize(scope: FastifyInstance, request: FastifyRequest): void {
  request.audit = {};
  if (crossOriginUpgrade(request) && !originAllowed(request.headers.origin, scope.services?.config.wsOrigins ?? [], request.headers.host)) {
    throw new ApiError('FORBIDDEN', originRefusal(request.headers.origin));
  }
  const token = bearerToken(request.headers.authorization, request.headers['sec-websocket-protocol'] as string | undefined);
  if (token === null) throw new ApiError('UNAUTHORIZED', 'send Authorization: Bearer <token>');
  const { security } = scope;
  const principal = security.tokens.authenticate(token);
  if (!principal) throw new ApiError('UNAUTHORIZED', 'the bearer token is not valid');
  request.principal = principal;
  const wait = security.rateLimit?.take(principal.id) ?? 0;
  if (wait > 0) {
    throw new ApiError('RATE_LIMITED', `token ${JSON.stringify(principal.id)} is over EXECD_RATE_LIMIT (${security.rateLimit!.perMinute} requests a minute)`, {}, { retryAfter: wait });
  }
  const needs = scopesOf(request.routeOptions.config);
  if (!needs.some((s) => hasScope(principal, s))) {
    const named = needs.map((s) => `"${s}"`).join(' or ');
    throw new ApiError('FORBIDDEN', `this needs the scope ${named}, which token ${JSON.stringify(principal.id)} does not hold`, { scope: needs.length === 1 ? needs[0] : needs });
  }
}

