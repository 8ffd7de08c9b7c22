import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { lookupUser } from '../../src/security/identity.js';
import { AUTH, TOKEN, testConfig } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { appWithLogs, bearer, operationsOf, routesOf, SCOPED_TOKENS, tempDir, writeTokensFile } from '../helpers/security.js';

const dir = tempDir();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const isRoot = process.geteuid?.() === 0;
const nobody = lookupUser('nobody');

/** A request that is valid for each operation, harmless, and needs nothing to exist. */
const SAMPLE: Record<string, { body?: unknown; params?: Record<string, string> }> = {
  run: { body: { argv: ['true'] } },
  subprocessGetoutput: { body: { cmd: 'true' } },
  subprocessGetstatusoutput: { body: { cmd: 'true' } },
  subprocessCheckOutput: { body: { args: ['true'] } },
  subprocessCall: { body: { args: ['true'] } },
  subprocessRun: { body: { args: ['true'] } },
  submitJob: { body: { argv: ['true'] } },
  signalJob: { body: { signal: 'SIGTERM' } },
  explainPolicy: { body: { argv: ['true'] } },
};

/** The scopes each operation needs (any one of). A new /v1 operation must be added here: the matrix has no exception. */
const NEEDS: Record<string, string[]> = {
  getInfo: ['info'],
  whoami: ['info', 'processes', 'run', 'jobs:read', 'jobs:write', 'admin'],
  listProcesses: ['processes'],
  getProcess: ['processes'],
  run: ['run'],
  subprocessGetoutput: ['run'],
  subprocessGetstatusoutput: ['run'],
  subprocessCheckOutput: ['run'],
  subprocessCall: ['run'],
  subprocessRun: ['run'],
  explainPolicy: ['run', 'jobs:write'],
  submitJob: ['jobs:write'],
  listJobs: ['jobs:read'],
  getJob: ['jobs:read'],
  getJobOutput: ['jobs:read'],
  listQueues: ['jobs:read'],
  cancelJob: ['jobs:write'],
  signalJob: ['jobs:write'],
  deleteJob: ['jobs:write'],
  streamJob: ['jobs:read'],
  jobEvents: ['jobs:read'],
  getNotifySecret: ['jobs:write'],
};

const fill = (path: string, params: Record<string, string> = {}) =>
  path.replace(/\{(\w+)\}|:(\w+)/g, (_, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b)!;
    return params[name] ?? (name === 'pid' ? String(process.pid) : '00000000-0000-4000-8000-000000000000');
  });

function inject(app: FastifyInstance, method: string, url: string, headers: Record<string, string>, body?: unknown) {
  return app.inject({
    method: method as 'GET',
    url,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

describe('authentication: every route enumerated from the app refuses a request without a valid token', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await buildApp(testConfig());
    await app.ready();
  });
  afterAll(() => app.close());

  it('each /v1 route of the route tree is documented and answers 401 without a token, with a wrong one, or with another scheme', async () => {
    const routes = routesOf(app).filter(([, p]) => p.startsWith('/v1/'));
    expect(routes.length).toBeGreaterThanOrEqual(15);
    const documented = new Set(operationsOf(app).map((o) => `${o.method} ${o.path}`));
    for (const [method, path] of routes) {
      if (method !== 'HEAD') expect(documented.has(`${method} ${path.replace(/:(\w+)/g, '{$1}')}`), `${method} ${path} is in openapi`).toBe(true);
      const url = fill(path);
      for (const headers of [{}, bearer('not-the-token-0123456789'), { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }, { authorization: 'Bearer' }]) {
        const res = await inject(app, method, url, headers, method === 'POST' ? {} : undefined);
        expect(res.statusCode, `${method} ${url} ${JSON.stringify(headers)}`).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        if (method !== 'HEAD') expect(res.json()).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
      }
    }
  });

  it('the operations marked open are exactly the health, readiness and docs routes', () => {
    const open = operationsOf(app).filter((o) => o.open).map((o) => o.path);
    expect(open.sort()).toEqual(['/', '/healthz', '/readyz']); // `/` only points to /docs
    for (const o of operationsOf(app)) if (o.path.startsWith('/v1/')) expect(o.statuses.has(401) && o.statuses.has(403) && o.statuses.has(429)).toBe(true);
  });

  it('a WebSocket upgrade from a foreign Origin is refused; same origin and non-browser clients pass', async () => {
    const base = { ...AUTH, connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    const foreign = await inject(app, 'GET', '/v1/info', { ...base, host: 'execd.local:8080', origin: 'https://evil.example' });
    expect(foreign.statusCode).toBe(403);
    expect(foreign.json()).toMatchObject({ code: 'FORBIDDEN' });
    expect((await inject(app, 'GET', '/v1/info', { ...base, host: 'execd.local:8080', origin: 'null' })).statusCode).toBe(403);
    expect((await inject(app, 'GET', '/v1/info', { ...base, host: 'execd.local:8080', origin: 'http://execd.local:8080' })).statusCode).not.toBe(403);
    expect((await inject(app, 'GET', '/v1/info', { ...base, host: 'execd.local:8080' })).statusCode).not.toBe(403);
  });
});

describe('scopes: the scope × route matrix', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await buildApp(testConfig({ EXECD_TOKENS_FILE: writeTokensFile(dir), EXECD_QUEUES: 'default:2' }));
    await app.ready();
  });
  afterAll(() => app.close());

  it('every /v1 operation answers each scoped token: 403 FORBIDDEN naming the scope it lacks, else never 401/403', async () => {
    const ops = operationsOf(app).filter((o) => o.path.startsWith('/v1/'));
    for (const o of ops) expect(NEEDS[o.operationId], `scope matrix lacks ${o.operationId}`).toBeDefined();
    const tokens: Array<[string, string]> = [...Object.entries(SCOPED_TOKENS), ['env (EXECD_TOKEN)', TOKEN]];
    for (const o of ops) {
      for (const [scope, token] of tokens) {
        const sample = SAMPLE[o.operationId] ?? {};
        const res = await inject(app, o.method, fill(o.path, sample.params), bearer(token), sample.body ?? (o.method === 'POST' ? {} : undefined));
        const allowed = scope === 'admin' || scope.startsWith('env') || NEEDS[o.operationId]!.includes(scope);
        const what = `${o.operationId} with ${scope}: ${res.statusCode} ${res.body.slice(0, 200)}`;
        expect(o.statuses.has(res.statusCode), what).toBe(true);
        if (allowed) {
          expect(res.statusCode, what).not.toBe(401);
          expect(res.statusCode, what).not.toBe(403);
        } else {
          expect(res.statusCode, what).toBe(403);
          expect(res.json().code, what).toBe('FORBIDDEN');
          for (const s of NEEDS[o.operationId]!) expect(res.json().detail, what).toContain(`"${s}"`);
        }
      }
    }
  });

  it('job ownership: another token sees 404 for every job operation, admin sees the job', async () => {
    const owner = writeTokensFile(dir, [
      { id: 'alice', token: 'alice-token-0123456789', scopes: ['jobs:read', 'jobs:write'] },
      { id: 'bob', token: 'bob-token-0123456789ab', scopes: ['jobs:read', 'jobs:write'] },
    ]);
    const a = await buildApp(testConfig({ EXECD_TOKENS_FILE: owner }));
    try {
      const alice = bearer('alice-token-0123456789');
      const bob = bearer('bob-token-0123456789ab');
      const created = await inject(a, 'POST', '/v1/jobs', alice, { argv: ['sleep', '5'], timeoutMs: 10_000 });
      expect(created.statusCode).toBe(202);
      const id = created.json().id as string;
      for (const [method, path, body] of [
        ['GET', `/v1/jobs/${id}`],
        ['GET', `/v1/jobs/${id}/output`],
        ['POST', `/v1/jobs/${id}/signal`, { signal: 'SIGCONT' }],
        ['POST', `/v1/jobs/${id}/cancel`, {}],
        ['DELETE', `/v1/jobs/${id}`],
      ] as Array<[string, string, unknown?]>) {
        const res = await inject(a, method, path, bob, body);
        expect(res.statusCode, `${method} ${path} as bob`).toBe(404);
      }
      const list = await inject(a, 'GET', '/v1/jobs', bob);
      expect(list.json().items.map((j: { id: string }) => j.id)).not.toContain(id);
      expect((await inject(a, 'GET', `/v1/jobs/${id}`, bearer(SCOPED_TOKENS.admin))).statusCode).toBe(200);
      expect((await inject(a, 'GET', `/v1/jobs/${id}`, alice)).statusCode).toBe(200);
      await inject(a, 'POST', `/v1/jobs/${id}/cancel`, alice, {});
    } finally {
      await a.close();
    }
  });
});

describe('hostile timing', () => {
  // Found by the fuzzer (seed 1354961622): the output stream of a job deleted meanwhile threw "the output was removed"
  // inside the jobs code, a 500. Now a 404 (or the bytes, when the read came first).
  it('GET /v1/jobs/{id}/output racing DELETE of the same job answers a declared status, never a 5xx', async () => {
    const app = await buildApp(testConfig());
    try {
      const id = (await inject(app, 'POST', '/v1/jobs', AUTH, { argv: ['echo', 'hi'] })).json().id as string;
      await inject(app, 'GET', `/v1/jobs/${id}?waitMs=5000`, AUTH);
      const [output, deleted] = await Promise.all([inject(app, 'GET', `/v1/jobs/${id}/output`, AUTH), inject(app, 'DELETE', `/v1/jobs/${id}`, AUTH)]);
      expect(deleted.statusCode).toBe(204);
      expect([200, 404]).toContain(output.statusCode);
    } finally {
      await app.close();
    }
  });
});

describe('command policy over HTTP', () => {
  let app: FastifyInstance;
  const root = join(dir, 'srv');
  beforeAll(async () => {
    mkdirSync(root, { recursive: true });
    const policy = join(dir, 'policy.json');
    writeFileSync(
      policy,
      JSON.stringify({
        rules: [
          { name: 'bot', tokens: ['run'], executables: ['echo', 'printf'], args: [['hello', '...'], ['%s', '...']], cwd: [root], maxTimeoutMs: 2000 },
          { name: 'writers', scopes: ['jobs:write'], executables: ['true'] },
          { name: 'admins', scopes: ['admin'], shell: true },
        ],
      }),
    );
    app = await buildApp(testConfig({ EXECD_TOKENS_FILE: writeTokensFile(dir), EXECD_POLICY_FILE: policy }));
  });
  afterAll(() => app.close());
  const run = bearer(SCOPED_TOKENS.run);

  it('allows what the rule allows and refuses the rest with 403 COMMAND_NOT_ALLOWED naming the rule', async () => {
    const ok = await inject(app, 'POST', '/v1/run', run, { argv: ['echo', 'hello', 'world'], cwd: root });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().stdout).toBe('hello world\n');
    for (const body of [
      { argv: ['rm', '-rf', root], cwd: root },
      { argv: ['echo', 'bye'], cwd: root },
      { command: 'echo hello', cwd: root },
      { argv: ['echo', 'hello'], cwd: '/' },
      { argv: ['echo', 'hello'], cwd: `${root}/../` },
      { argv: ['echo', 'hello'], cwd: root, env: { LD_PRELOAD: '/tmp/evil.so' } },
    ]) {
      const res = await inject(app, 'POST', '/v1/run', run, body);
      expect(res.statusCode, JSON.stringify(body)).toBe(403);
      const p = res.json();
      expect(p).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule: 'bot' });
      expect(p.detail).toMatch(/^not allowed by policy rule "bot": /);
      expect(p.reasons.length).toBeGreaterThan(0);
      expect(res.headers['content-type']).toMatch(/problem\+json/);
    }
  });

  it('covers the subprocess functions too (shell=True is a shell command)', async () => {
    const ok = await inject(app, 'POST', '/v1/subprocess/check_output', run, { args: ['printf', '%s', 'x'], cwd: root, text: true });
    expect(ok.json()).toEqual({ output: 'x' });
    for (const [path, body] of [
      ['/v1/subprocess/getoutput', { cmd: 'echo hello' }],
      ['/v1/subprocess/run', { args: 'echo hello', shell: true, cwd: root }],
      ['/v1/subprocess/call', { args: ['id'], cwd: root }],
      ['/v1/subprocess/check_output', { args: ['printf', '%s', 'x'], cwd: root, env: { NODE_OPTIONS: '--require /x' } }],
    ] as const) {
      const res = await inject(app, 'POST', path, run, body);
      expect(res.statusCode, path).toBe(403);
      expect(res.json().code).toBe('COMMAND_NOT_ALLOWED');
    }
  });

  it('clamps the timeout to the rule', async () => {
    const res = await inject(app, 'POST', '/v1/run', run, { argv: ['printf', '%s', 'x'], cwd: root, timeoutMs: 600_000 });
    expect(res.statusCode).toBe(200);
    const explained = await inject(app, 'POST', '/v1/policy/explain', run, { argv: ['printf', '%s', 'x'], cwd: root, timeoutMs: 600_000 });
    expect(explained.json()).toMatchObject({ allowed: true, rule: 'bot', effective: { timeoutMs: 2000, cwd: root } });
  });

  it('POST /v1/policy/explain answers allowed, rule and reasons without running anything', async () => {
    const marker = join(dir, 'explain-marker');
    const denied = await inject(app, 'POST', '/v1/policy/explain', run, { argv: ['touch', marker], cwd: root });
    expect(denied.statusCode).toBe(200);
    expect(denied.json()).toMatchObject({ allowed: false, rule: 'bot', effective: null });
    expect(denied.json().reasons.join()).toMatch(/executable "touch" is not one the rule allows/);
    const admin = await inject(app, 'POST', '/v1/policy/explain', bearer(SCOPED_TOKENS.admin), { command: `touch ${marker}` });
    expect(admin.json()).toMatchObject({ allowed: true, rule: 'admins' });
    expect(() => readFileSync(marker)).toThrow();
    // jobs:write alone may explain; info may not
    expect((await inject(app, 'POST', '/v1/policy/explain', bearer(SCOPED_TOKENS['jobs:write']), { argv: ['true'] })).json()).toMatchObject({ allowed: true, rule: 'writers' });
    expect((await inject(app, 'POST', '/v1/policy/explain', bearer(SCOPED_TOKENS.info), { argv: ['true'] })).statusCode).toBe(403);
    expect((await inject(app, 'POST', '/v1/policy/explain', run, { argv: 'true' })).statusCode).toBe(400);
  });

  it('refuses a job the policy refuses', async () => {
    const res = await inject(app, 'POST', '/v1/jobs', bearer(SCOPED_TOKENS['jobs:write']), { argv: ['sh', '-c', 'exit 0'] });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule: 'writers' });
  });
});

describe('environment, canary, audit log', () => {
  const CANARY = `canary-${Math.random().toString(36).slice(2)}-secret`;
  const ENV_SECRET = `envval-${Math.random().toString(36).slice(2)}`;
  const STDIN_SECRET = `stdin-${Math.random().toString(36).slice(2)}`;

  it('refuses code-loading env keys without a policy (403 naming code-loading-env); ordinary keys pass', async () => {
    const app = await buildApp(testConfig());
    try {
      for (const key of ['LD_PRELOAD', 'LD_LIBRARY_PATH', 'LD_AUDIT', 'NODE_OPTIONS', 'BASH_ENV', 'ENV', 'PYTHONSTARTUP', 'PYTHONPATH', 'PERL5OPT', 'RUBYOPT', 'GCONV_PATH']) {
        const res = await inject(app, 'POST', '/v1/run', AUTH, { argv: ['true'], env: { [key]: '/tmp/x' } });
        expect(res.statusCode, key).toBe(403);
        expect(res.json()).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule: 'code-loading-env' });
      }
      const py = await inject(app, 'POST', '/v1/subprocess/run', AUTH, { args: ['true'], env: { LD_PRELOAD: '/x.so' } });
      expect(py.statusCode).toBe(403);
      const ok = await inject(app, 'POST', '/v1/run', AUTH, { argv: ['printenv', 'FOO'], env: { FOO: 'bar' } });
      expect(ok.json().stdout).toBe('bar\n');
    } finally {
      await app.close();
    }
  });

  it('a canary in the server environment reaches no child, no log line and no response; env values, stdin and tokens never reach the log', async () => {
    process.env.EXECD_TEST_CANARY = CANARY;
    const { app, lines, entries } = await appWithLogs();
    const bodies: string[] = [];
    try {
      const send = async (method: string, url: string, body?: unknown, headers: Record<string, string> = AUTH) => {
        const res = await inject(app, method, url, headers, body);
        bodies.push(JSON.stringify(res.headers), res.body);
        return res;
      };
      await send('POST', '/v1/run', { argv: ['env'] });
      await send('POST', '/v1/run', { command: 'env; cat /proc/self/environ' });
      await send('POST', '/v1/run', { argv: ['cat'], stdin: STDIN_SECRET, env: { SECRET_VALUE: ENV_SECRET } });
      await send('POST', '/v1/subprocess/getoutput', { cmd: 'env' });
      await send('POST', '/v1/subprocess/check_output', { args: ['env'], env: { X: ENV_SECRET }, input: Buffer.from(STDIN_SECRET).toString('base64') });
      await send('POST', '/v1/subprocess/run', { args: ['env'], capture_output: true, text: true });
      const job = await send('POST', '/v1/jobs', { argv: ['env'], env: { SECRET_VALUE: ENV_SECRET }, stdin: STDIN_SECRET });
      const id = job.json().id as string;
      await send('GET', `/v1/jobs/${id}?waitMs=5000`);
      await send('GET', `/v1/jobs/${id}/output`);
      await send('GET', '/v1/info');
      await send('GET', '/v1/processes');
      await send('GET', '/openapi.json', undefined, {});
      await send('POST', '/v1/run', { argv: ['true'] }, bearer(CANARY));
      await send('POST', '/v1/run', { argv: ['true'], env: { LD_PRELOAD: ENV_SECRET } });
      // the env output really was captured (the test sees children's environments)
      expect(bodies.join('\n')).toContain('EXECD_INSTANCE');
      expect(bodies.join('\n')).toContain(`SECRET_VALUE=${ENV_SECRET}`); // the job printed its own env: that is the caller's own value
    } finally {
      await app.close();
      delete process.env.EXECD_TEST_CANARY;
    }
    const all = bodies.join('\n');
    expect(all).not.toContain(CANARY);
    const log = lines.join('');
    expect(log.length).toBeGreaterThan(1000);
    for (const secret of [CANARY, ENV_SECRET, STDIN_SECRET, TOKEN, Buffer.from(STDIN_SECRET).toString('base64')]) expect(log).not.toContain(secret);

    // The audit lines: one logger, an event, the token id, the command, cwd, uid and outcome.
    const audit = entries().filter((e) => e.log === 'audit');
    const runs = audit.filter((e) => e.event === 'run');
    expect(runs.length).toBeGreaterThanOrEqual(6);
    expect(runs[0]).toMatchObject({ tokenId: 'env', argv: ['env'], uid: process.getuid!(), status: 200, outcome: 'ok', returncode: 0 });
    expect(runs[0]).toHaveProperty('cwd');
    expect(runs.find((e) => e.command === 'env; cat /proc/self/environ')).toBeTruthy();
    expect(runs.find((e) => Array.isArray(e.envKeys) && (e.envKeys as string[]).includes('SECRET_VALUE'))).toBeTruthy();
    expect(runs.find((e) => e.outcome === 'denied' && e.rule === 'code-loading-env')).toBeTruthy();
    expect(audit.find((e) => e.event === 'job.submit' && e.tokenId === 'env' && e.status === 202)).toBeTruthy();
    expect(audit.find((e) => e.event === 'run' && e.tokenId === null && e.status === 401 && e.outcome === 'unauthorized')).toBeTruthy();
    expect(audit.find((e) => e.event === 'auth.failed')).toBeUndefined(); // GET routes were asked with a good token
  });
});

describe('rate limit', () => {
  it('429 RATE_LIMITED with Retry-After past EXECD_RATE_LIMIT, per token id', async () => {
    const app = await buildApp(testConfig({ EXECD_RATE_LIMIT: '5', EXECD_TOKENS_FILE: writeTokensFile(dir) }));
    try {
      const codes: number[] = [];
      for (let i = 0; i < 7; i++) codes.push((await inject(app, 'GET', '/v1/info', AUTH)).statusCode);
      expect(codes).toEqual([200, 200, 200, 200, 200, 429, 429]);
      const res = await inject(app, 'GET', '/v1/info', AUTH);
      expect(res.json()).toMatchObject({ code: 'RATE_LIMITED', status: 429 });
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect((await inject(app, 'GET', '/v1/info', bearer(SCOPED_TOKENS.info))).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe.skipIf(!isRoot || !nobody)('identity: a root server runs commands as another user', () => {
  const status = (text: string, field: string) => new RegExp(`^${field}:[ \\t]*(.*)$`, 'm').exec(text)?.[1]?.trim().split(/\s+/).filter(Boolean) ?? [];

  it('EXECD_RUN_AS=nobody: the child has nobody\'s uid and gid and no supplementary groups; RunResult and /v1/info say so', async () => {
    const app = await buildApp(testConfig({ EXECD_RUN_AS: 'nobody' }));
    try {
      const res = await inject(app, 'POST', '/v1/run', AUTH, { argv: ['cat', '/proc/self/status'] });
      expect(res.statusCode).toBe(200);
      const r = res.json();
      expect(status(r.stdout, 'Uid')).toEqual(Array(4).fill(String(nobody!.uid)));
      expect(status(r.stdout, 'Gid')).toEqual(Array(4).fill(String(nobody!.gid)));
      expect(status(r.stdout, 'Groups')).toEqual([]);
      expect(r).toMatchObject({ uid: nobody!.uid, gid: nobody!.gid });
      const info = (await inject(app, 'GET', '/v1/info', AUTH)).json();
      expect(info.runAs).toEqual({ uid: nobody!.uid, gid: nobody!.gid, user: 'nobody' });
      expect(info.uid).toBe(0);
      // HOME and the default cwd are not root's
      const env = (await inject(app, 'POST', '/v1/run', AUTH, { command: 'echo "$HOME"; pwd' })).json();
      expect(env.stdout).toBe(`${nobody!.home}\n/\n`);
      // a job runs as nobody too once the jobs code applies the grant: checked in the jobs tests
    } finally {
      await app.close();
    }
  });

  it("a policy rule's runAs wins over the server default", async () => {
    const policy = join(dir, 'runas.json');
    writeFileSync(policy, JSON.stringify({ rules: [{ name: 'as-nobody', runAs: 'nobody' }] }));
    const app = await buildApp(testConfig({ EXECD_POLICY_FILE: policy }));
    try {
      const r = (await inject(app, 'POST', '/v1/run', AUTH, { argv: ['id', '-u'] })).json();
      expect(r.stdout).toBe(`${nobody!.uid}\n`);
      expect(r.uid).toBe(nobody!.uid);
    } finally {
      await app.close();
    }
  });

  it('limits {processes: 5} stops a fork loop run as nobody', async () => {
    const app = await buildApp(testConfig({ EXECD_RUN_AS: 'nobody' }));
    try {
      const t0 = Date.now();
      const res = await inject(app, 'POST', '/v1/run', AUTH, {
        command: 'n=0; while [ $n -lt 200 ]; do sleep 3 & n=$((n+1)); done; echo "started $n"',
        limits: { processes: 5 },
        timeoutMs: 20_000,
        killGraceMs: 0,
      });
      const r = res.json();
      expect(res.statusCode).toBe(200);
      expect(r.stdout).not.toContain('started 200');
      expect(r.stderr).toMatch(/fork|Resource temporarily unavailable/i);
      expect(r.returncode).not.toBe(0);
      expect(Date.now() - t0).toBeLessThan(15_000);
      // without the limit the same loop would start them all
      const free = (await inject(app, 'POST', '/v1/run', AUTH, { command: 'n=0; while [ $n -lt 20 ]; do true & n=$((n+1)); done; wait; echo "started $n"', timeoutMs: 20_000 })).json();
      expect(free.stdout).toBe('started 20\n');
    } finally {
      await app.close();
    }
  });
});

describe('resource limits with prlimit', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await buildApp(testConfig());
  });
  afterAll(() => app.close());

  it('cpuSeconds ends a busy loop with SIGXCPU (or SIGKILL)', async () => {
    const r = (await inject(app, 'POST', '/v1/run', AUTH, { command: 'while :; do :; done', limits: { cpuSeconds: 1 }, timeoutMs: 20_000 })).json();
    expect(['SIGXCPU', 'SIGKILL']).toContain(r.signal);
    expect(r.timedOut).toBe(false);
  });

  it('fileSizeBytes stops a large write; openFiles bounds descriptors; memoryBytes bounds the address space', async () => {
    const big = (await inject(app, 'POST', '/v1/run', AUTH, { argv: ['head', '-c', '100000', '/dev/zero'], limits: { fileSizeBytes: 1000 }, cwd: dir })).json();
    expect(big.stdout.length).toBe(100000); // a pipe is not a file: RLIMIT_FSIZE does not apply
    const file = (await inject(app, 'POST', '/v1/run', AUTH, { command: `head -c 100000 /dev/zero > ${dir}/fsize.bin`, limits: { fileSizeBytes: 1000 } })).json();
    expect(file.signal === 'SIGXFSZ' || file.returncode !== 0).toBe(true);
    const fds = (await inject(app, 'POST', '/v1/run', AUTH, { command: 'ulimit -n', limits: { openFiles: 17 } })).json();
    expect(fds.stdout).toBe('17\n');
    const mem = (await inject(app, 'POST', '/v1/run', AUTH, { command: 'ulimit -v', limits: { memoryBytes: 64 * 1024 * 1024 } })).json();
    expect(mem.stdout).toBe(`${64 * 1024}\n`);
    const nproc = (await inject(app, 'POST', '/v1/run', AUTH, { argv: ['grep', 'Max processes', '/proc/self/limits'], limits: { processes: 7 } })).json();
    expect(nproc.stdout).toMatch(/^Max processes\s+7\s+7\s/);
  });

  it('limits leave pid, process group, argv and exit status as without them', async () => {
    const r = (await inject(app, 'POST', '/v1/run', AUTH, { argv: ['sh', '-c', 'echo $$ $(ps -o pgid= -p $$); exit 3'], limits: { openFiles: 64 } })).json();
    const [pid, pgid] = r.stdout.trim().split(/\s+/).map(Number);
    expect(pid).toBe(r.pid);
    expect(pgid).toBe(r.pid);
    expect(r.returncode).toBe(3);
  });
});

describe('SIGHUP reload (main.ts)', () => {
  it('re-reads the tokens file; a broken file keeps the tokens in force', async () => {
    const { spawn } = await import('node:child_process');
    const { createInterface } = await import('node:readline');
    const tokens = join(dir, 'hup-tokens.json');
    writeFileSync(tokens, JSON.stringify([{ id: 'one', token: 'first-token-0123456789', scopes: ['info'] }]), { mode: 0o600 });
    const root = new URL('../..', import.meta.url).pathname;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', EXECD_PORT: '0', EXECD_TOKENS_FILE: tokens },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'], // it dies with this test (helpers/server.ts)
    });
    try {
      const lines: string[] = [];
      createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
      expect(await waitFor(() => lines.length > 0, 15_000)).toBe(true);
      const url = (JSON.parse(lines[0]!).msg as string).replace('execd listening on ', '');
      const get = (token: string) => fetch(`${url}/v1/info`, { headers: bearer(token) }).then((r) => r.status);
      expect(await get('first-token-0123456789')).toBe(200);
      writeFileSync(tokens, JSON.stringify([{ id: 'two', token: 'second-token-0123456789', scopes: ['info'] }]));
      child.kill('SIGHUP');
      expect(await waitFor(async () => (await get('second-token-0123456789')) === 200, 5000)).toBe(true);
      expect(await get('first-token-0123456789')).toBe(401);
      writeFileSync(tokens, '[{"id": "three"');
      child.kill('SIGHUP');
      expect(await waitFor(() => lines.some((l) => l.includes('not reloaded')), 5000)).toBe(true);
      expect(await get('second-token-0123456789')).toBe(200);
      expect(lines.join('\n')).not.toContain('second-token-0123456789');
      expect(lines.some((l) => l.includes('no EXECD_POLICY_FILE'))).toBe(true);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 30_000);
});
