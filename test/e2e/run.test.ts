import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunResult } from '../../src/schemas/run.js';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';
import { membersOfGroup, waitFor } from '../helpers/proc.js';

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
const CANARY = 'canary-secret-value-8d0c2f';

let t: TestApp;
const logLines: string[] = [];

beforeAll(async () => {
  process.env.EXECD_TEST_CANARY = CANARY;
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  t = await startApp({ EXECD_MAX_OUTPUT_BYTES: String(8 << 20) }, { logger: { level: 'debug', stream: logStream } });
});
afterAll(async () => {
  await t.close();
  delete process.env.EXECD_TEST_CANARY;
});

const run = (body: unknown, headers: Record<string, string> = {}) =>
  t.http.post('/v1/run').set(AUTH).set(headers).send(body as object);

/** No error body may carry a stack trace, a server path or a secret. */
function expectCleanProblem(res: { status: number; headers: Record<string, string>; text: string }, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = JSON.parse(res.text);
  expect(body).toMatchObject({ status, code });
  expect(typeof body.title).toBe('string');
  expect(typeof body.detail).toBe('string');
  expect(res.text).not.toMatch(/\bat [\w.<>]+ \(|node_modules|\/work\/main\/src|\.ts:\d/);
  expect(res.text).not.toContain(CANARY);
  return body;
}

describe('POST /v1/run', () => {
  it('runs argv without a shell and answers a RunResult', async () => {
    const res = await run({ argv: ['echo', 'hello', '$HOME', '; touch /tmp/x'] });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ exitCode: 0, signal: null, returncode: 0, stdout: 'hello $HOME ; touch /tmp/x\n', stderr: '', timedOut: false, encoding: 'utf8', truncated: { stdout: false, stderr: false } });
    expect(res.body.pid).toBeGreaterThan(1);
    expect(Date.parse(res.body.finishedAt)).toBeGreaterThanOrEqual(Date.parse(res.body.startedAt));
    expect(Number.isInteger(res.body.durationMs)).toBe(true);
  });

  it('answers exactly in RunResult\'s shape (the route serializes with JSON.stringify, not through zod)', async () => {
    const answers = await Promise.all([
      run({ argv: ['true'] }),
      run({ command: 'echo out; echo err >&2; exit 3' }),
      run({ command: 'kill -TERM $$' }),
      run({ argv: ['sleep', '5'], timeoutMs: 100, killGraceMs: 0 }),
      run({ command: 'printf abcdef', maxOutputBytes: 2, stderr: 'merge', encoding: 'base64' }),
    ]);
    for (const res of answers) {
      expect(res.status).toBe(200);
      const parsed = RunResult.strict().safeParse(res.body);
      expect(parsed.error).toBeUndefined();
      expect(parsed.data).toEqual(res.body);
    }
  });

  it('runs a shell command with `command`, and reports a non-zero exit', async () => {
    const res = await run({ command: 'echo out; echo err >&2; exit 3' });
    expect(res.body).toMatchObject({ exitCode: 3, returncode: 3, stdout: 'out\n', stderr: 'err\n' });
  });

  it('reports a signal as Python does: exitCode null, returncode -N', async () => {
    const res = await run({ command: 'kill -KILL $$' });
    expect(res.body).toMatchObject({ exitCode: null, signal: 'SIGKILL', returncode: -9 });
  });

  it('sends stdin given as utf8 or base64, then EOF', async () => {
    expect((await run({ argv: ['cat'], stdin: 'héllo\n' })).body.stdout).toBe('héllo\n');
    const b = await run({ argv: ['od', '-An', '-tx1'], stdin: Buffer.from([0, 255, 10]).toString('base64'), stdinEncoding: 'base64' });
    expect(b.body.stdout.trim()).toBe('00 ff 0a');
  });

  it('gives the child an empty stdin, never the server’s', async () => {
    const res = await run({ argv: ['wc', '-c'] });
    expect(res.body.stdout.trim()).toBe('0');
  });

  it('returns output as base64 on request, byte-exact', async () => {
    const res = await run({ argv: ['printf', '\\000\\377abc'], encoding: 'base64' });
    expect(res.body.encoding).toBe('base64');
    expect(Buffer.from(res.body.stdout, 'base64')).toEqual(Buffer.from([0, 255, 97, 98, 99]));
  });

  it('uses a small base environment plus the request’s env, never the server’s', async () => {
    const res = await run({ argv: ['env'], env: { FOO: 'bar baz', PATH: '/usr/bin:/bin' } });
    const lines = res.body.stdout.trim().split('\n');
    const env = Object.fromEntries(lines.map((l: string) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(env.FOO).toBe('bar baz');
    expect(env.PATH).toBe('/usr/bin:/bin');
    expect(env.HOME).toBeTruthy();
    expect(res.body.stdout).not.toContain(CANARY);
    expect(env.EXECD_TEST_CANARY).toBeUndefined();
    expect(Object.keys(env).length).toBeLessThanOrEqual(10);
  });

  it('runs in cwd', async () => {
    const res = await run({ argv: ['pwd'], cwd: '/tmp' });
    expect(res.body.stdout).toBe('/tmp\n');
  });

  it('merges stderr into stdout in order with stderr: merge (argv and command)', async () => {
    const a = await run({ argv: ['sh', '-c', 'echo 1; echo 2 >&2; echo 3; echo 4 >&2'], stderr: 'merge' });
    expect(a.body).toMatchObject({ stdout: '1\n2\n3\n4\n', stderr: '' });
    const c = await run({ command: 'echo 1; echo 2 >&2; echo 3', stderr: 'merge' });
    expect(c.body).toMatchObject({ stdout: '1\n2\n3\n', stderr: '' });
    const e = await run({ command: 'syntax error (', stderr: 'merge' });
    expect(e.body.stdout).toMatch(/syntax error/i);
    expect(e.body.returncode).not.toBe(0);
  });

  it('keeps argv[0] and arguments intact under merge', async () => {
    const res = await run({ argv: ['printf', '%s|', 'a b', '$(id)', '"q"', ''], stderr: 'merge' });
    expect(res.body.stdout).toBe('a b|$(id)|"q"||');
  });

  it('caps output per stream: drained and dropped, truncated set, the process runs on', async () => {
    const res = await run({ command: 'head -c 100000 /dev/zero; echo done >&2', maxOutputBytes: 1000 });
    expect(res.body.exitCode).toBe(0);
    expect(res.body.truncated).toEqual({ stdout: true, stderr: false });
    expect(res.body.stdout.length).toBe(1000);
    expect(res.body.stderr).toBe('done\n');
  });

  it('kills the whole process group at the timeout, SIGTERM then SIGKILL, leaving no survivor', async () => {
    const res = await run({ argv: [join(FIXTURES, 'forever.sh')], timeoutMs: 300, killGraceMs: 200 });
    expect(res.body).toMatchObject({ timedOut: true, exitCode: null, signal: 'SIGTERM', returncode: -15, stdout: 'started\n' });
    expect(await waitFor(() => membersOfGroup(res.body.pid).length === 0, 2000)).toBe(true);
  });

  it('SIGKILLs a process that ignores SIGTERM after the grace', async () => {
    const started = Date.now();
    const res = await run({ command: "trap '' TERM; echo ready; while :; do sleep 0.05; done", timeoutMs: 200, killGraceMs: 300 });
    expect(res.body).toMatchObject({ timedOut: true, signal: 'SIGKILL', returncode: -9 });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await waitFor(() => membersOfGroup(res.body.pid).length === 0, 2000)).toBe(true);
  });

  it('a stopped process is continued so SIGTERM ends it without waiting for the grace', async () => {
    const started = Date.now();
    const res = await run({ command: 'kill -STOP $$; sleep 30', timeoutMs: 200, killGraceMs: 5000 });
    expect(res.body).toMatchObject({ timedOut: true, signal: 'SIGTERM' });
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('answers on exit even when a grandchild keeps the pipes open, and kills the leftover', async () => {
    const started = Date.now();
    const res = await run({ command: 'sleep 30 & echo parent-done' });
    expect(res.body).toMatchObject({ exitCode: 0, stdout: 'parent-done\n' });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await waitFor(() => membersOfGroup(res.body.pid).length === 0, 3000)).toBe(true);
  });

  it('check: true turns a non-zero status into 422 COMMAND_FAILED worded as CalledProcessError', async () => {
    const res = await run({ argv: ['sh', '-c', 'echo partial; exit 2'], check: true });
    const body = expectCleanProblem(res, 422, 'COMMAND_FAILED');
    expect(body.detail).toBe("Command '['sh', '-c', 'echo partial; exit 2']' returned non-zero exit status 2.");
    expect(body.result).toMatchObject({ exitCode: 2, stdout: 'partial\n' });
    const sig = await run({ command: 'kill -9 $$', check: true });
    expect(expectCleanProblem(sig, 422, 'COMMAND_FAILED').detail).toBe("Command 'kill -9 $$' died with <Signals.SIGKILL: 9>.");
    expect((await run({ argv: ['true'], check: true })).status).toBe(200);
  });

  it('check: true with a timeout is 422 TIMEOUT_EXPIRED worded as TimeoutExpired', async () => {
    const res = await run({ command: 'echo part; sleep 10', timeoutMs: 250, check: true });
    const body = expectCleanProblem(res, 422, 'TIMEOUT_EXPIRED');
    expect(body.detail).toBe("Command 'echo part; sleep 10' timed out after 0.25 seconds");
    expect(body.result.stdout).toBe('part\n');
  });

  it('Accept: text/plain answers the raw stdout with the status in headers', async () => {
    const res = await run({ command: 'printf "a\\nb"; exit 4' }, { accept: 'text/plain' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.text).toBe('a\nb');
    expect(res.headers['x-exit-code']).toBe('4');
    expect(res.headers['x-returncode']).toBe('4');
    expect(res.headers['x-signal']).toBe('');
    const sig = await run({ command: 'kill -TERM $$' }, { accept: 'text/plain' });
    expect(sig.headers['x-exit-code']).toBe('');
    expect(sig.headers['x-signal']).toBe('SIGTERM');
    expect(sig.headers['x-returncode']).toBe('-15');
  });

  it('a client that goes away takes its run with it', async () => {
    const marker = `execd-disconnect-${process.pid}-${Date.now()}`;
    const req = t.http.post('/v1/run').set(AUTH).send({ argv: ['sleep', '30'], env: { MARK: marker } });
    const pending = req.then(
      () => undefined,
      () => undefined,
    );
    let pid = 0;
    await waitFor(() => {
      const tracked = [...(t.app.services.tracker as unknown as { runs: Map<number, unknown> }).runs.keys()];
      pid = tracked[0] ?? 0;
      return pid > 0;
    });
    expect(pid).toBeGreaterThan(0);
    req.abort();
    await pending;
    expect(await waitFor(() => membersOfGroup(pid).length === 0, 5000)).toBe(true);
  });
});

describe('POST /v1/run refuses bad input with a clear 4xx', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'execd-run-'));
    writeFileSync(join(dir, 'file'), 'x');
    chmodSync(join(FIXTURES, 'not-executable.sh'), 0o644);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['argv as a string', { argv: 'echo' }],
    ['empty argv', { argv: [] }],
    ['argv with a number', { argv: ['echo', 1] }],
    ['neither argv nor command', { cwd: '/tmp' }],
    ['both argv and command', { argv: ['true'], command: 'true' }],
    ['an unknown field', { argv: ['true'], shell: true }],
    ['a timeout as a string', { argv: ['true'], timeoutMs: '100' }],
    ['a fractional timeout', { argv: ['true'], timeoutMs: 1.5 }],
    ['a negative timeout', { argv: ['true'], timeoutMs: -1 }],
    ['a bad encoding', { argv: ['true'], encoding: 'latin1' }],
    ['a bad stderr mode', { argv: ['true'], stderr: 'null' }],
    ['env with a number', { argv: ['true'], env: { A: 1 } }],
    ['env name with =', { argv: ['true'], env: { 'A=B': 'c' } }],
    ['check as a string', { argv: ['true'], check: 'yes' }],
    ['stdin not base64', { argv: ['cat'], stdin: '%%%', stdinEncoding: 'base64' }],
    ['streaming stdin on a sync run', { argv: ['cat'], stdin: { stream: true } }],
    ['maxOutputBytes above the server cap', { argv: ['true'], maxOutputBytes: 1 << 30 }],
    ['a JSON array body', [1, 2]],
    ['null body', null],
  ])('%s → 400 VALIDATION_FAILED', async (_name, body) => {
    const res = await t.http.post('/v1/run').set(AUTH).set('content-type', 'application/json').send(JSON.stringify(body));
    expectCleanProblem(res, 400, 'VALIDATION_FAILED');
  });

  it('malformed JSON → 400', async () => {
    const res = await t.http.post('/v1/run').set(AUTH).set('content-type', 'application/json').send('{"argv": [');
    expectCleanProblem(res, 400, 'VALIDATION_FAILED');
  });

  it('an empty body → 400', async () => {
    const res = await t.http.post('/v1/run').set(AUTH).set('content-type', 'application/json').send('');
    expectCleanProblem(res, 400, 'VALIDATION_FAILED');
  });

  it('a non-JSON content type → 415', async () => {
    const res = await t.http.post('/v1/run').set(AUTH).set('content-type', 'text/plain').send('echo hi');
    expectCleanProblem(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('a body over the limit → 413', async () => {
    const res = await run({ argv: ['echo', 'x'.repeat(1.1 * 1024 * 1024)] });
    expectCleanProblem(res, 413, 'PAYLOAD_TOO_LARGE');
  });

  it.each([
    ['a missing binary', 'ENOENT', { argv: ['no-such-program-execd'] }],
    ['a missing absolute path', 'ENOENT', { argv: ['/nonexistent/bin/x'] }],
    ['a non-executable file', 'EACCES', { argv: [join(FIXTURES, 'not-executable.sh')] }],
    ['a directory as the program', 'EACCES', { argv: ['/tmp'] }],
    ['a missing cwd', 'ENOENT', { argv: ['true'], cwd: '/nonexistent-dir' }],
    ['a file as cwd', 'ENOTDIR', { argv: ['true'], cwd: '/etc/hostname' }],
    ['NUL in argv', 'EINVAL', { argv: ['echo', 'a\u0000b'] }],
    ['NUL in argv[0]', 'EINVAL', { argv: ['ec\u0000ho'] }],
    ['NUL in an env value', 'EINVAL', { argv: ['true'], env: { A: 'x\u0000y' } }],
    ['NUL in an env name', 'EINVAL', { argv: ['true'], env: { 'A\u0000': 'x' } }],
    ['NUL in cwd', 'EINVAL', { argv: ['true'], cwd: '/tmp\u0000x' }],
    ['NUL in command', 'EINVAL', { command: 'echo a\u0000b' }],
    ['a 200 KiB argument', 'E2BIG', { argv: ['echo', 'x'.repeat(200 * 1024)] }],
  ])('%s → 422 SPAWN_FAILED %s', async (_name, errno, body) => {
    const res = await run(body);
    const problem = expectCleanProblem(res, 422, 'SPAWN_FAILED');
    expect(problem.errno).toBe(errno);
  });

  it('a cwd or program that goes bad right after a run there still fails cleanly (the checks remember passes for a second)', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'execd-run-gone-'));
    const program = join(cwd, 'prog');
    writeFileSync(program, '#!/bin/sh\necho ran\n');
    chmodSync(program, 0o755);
    expect((await run({ argv: [program], cwd })).body.stdout).toBe('ran\n');
    chmodSync(program, 0o644); // no longer executable: the kernel refuses the exec
    const noExec = expectCleanProblem(await run({ argv: [program], cwd }), 422, 'SPAWN_FAILED');
    expect(noExec.errno).toBe('EACCES');
    rmSync(cwd, { recursive: true, force: true }); // the cwd is gone: chdir fails in the child
    const noCwd = expectCleanProblem(await run({ argv: ['true'], cwd }), 422, 'SPAWN_FAILED');
    expect(noCwd.errno).toBe('ENOENT');
  });

  it('a missing command under a shell is exit 127 from the shell, not a spawn failure', async () => {
    const res = await run({ command: 'no-such-program-execd' });
    expect(res.status).toBe(200);
    expect(res.body.returncode).toBe(127);
  });

  it('without a token → 401, with a wrong one → 401, with WWW-Authenticate', async () => {
    const none = await t.http.post('/v1/run').send({ argv: ['true'] });
    expectCleanProblem(none, 401, 'UNAUTHORIZED');
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    const wrong = await t.http.post('/v1/run').set('authorization', 'Bearer wrong-token-xxxxxxxxxxxx').send({ argv: ['true'] });
    expectCleanProblem(wrong, 401, 'UNAUTHORIZED');
    const basic = await t.http.post('/v1/run').set('authorization', 'Basic dXNlcjpwYXNz').send({ argv: ['true'] });
    expectCleanProblem(basic, 401, 'UNAUTHORIZED');
  });

  it('an unknown route → 404 problem', async () => {
    expectCleanProblem(await t.http.get('/v1/nope').set(AUTH), 404, 'NOT_FOUND');
  });

  it('never logs the server’s canary, the token, env values or stdin', async () => {
    await run({ argv: ['true'], env: { SECRET: 'env-value-5b1e' }, stdin: 'stdin-value-77aa' });
    const all = logLines.join('');
    expect(all.length).toBeGreaterThan(0);
    expect(all).not.toContain(CANARY);
    expect(all).not.toContain('env-value-5b1e');
    expect(all).not.toContain('stdin-value-77aa');
    expect(all).not.toContain(AUTH.authorization.slice(7));
  });
});
