import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pyFloat, pySignalRepr, pyStr } from '../../src/python/pyrepr.js';
import { calledProcessErrorStr, popenArgv, translateNewlines } from '../../src/python/subprocess.js';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';

const PY_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' };

describe('Python wording helpers', () => {
  it('pyFloat prints what Python prints for a number JavaScript wrote as JSON', async () => {
    const numbers = [
      1, 60, 0.5, 0.25, 1e-5, 1.5e-5, 0.0001, 0.001, 1e16, 1.5e16, 1e21, 123456789.123, 1e22, 0.1 + 0.2, 1e-7, 1000000000000000.5,
    ];
    const child = execFile('python3', ['-c', 'import json,sys\nfor x in json.load(sys.stdin): print(repr(x))'], { env: PY_ENV });
    const out = new Promise<string>((resolve, reject) => {
      let text = '';
      child.stdout!.on('data', (d: Buffer) => (text += String(d)));
      child.on('error', reject);
      child.on('close', () => resolve(text));
    });
    child.stdin!.end(JSON.stringify(numbers));
    expect((await out).trim().split('\n')).toEqual(numbers.map(pyFloat));
  });

  it('pyStr is str(): the text itself, or the repr of a list', () => {
    expect(pyStr("echo 'q'")).toBe("echo 'q'");
    expect(pyStr(['sh', '-c', "it's", 'a\nb'])).toBe(`['sh', '-c', "it's", 'a\\nb']`);
  });

  it('names signals as signal.Signals does', () => {
    expect(pySignalRepr(9)).toBe('<Signals.SIGKILL: 9>');
    expect(pySignalRepr(6)).toBe('<Signals.SIGABRT: 6>');
    if (process.platform === 'linux') {
      expect(pySignalRepr(29)).toBe('<Signals.SIGIO: 29>');
      expect(pySignalRepr(34)).toBe('<Signals.SIGRTMIN: 34>');
      expect(pySignalRepr(35)).toBeUndefined();
      expect(calledProcessErrorStr(['x'], -35)).toBe("Command '['x']' died with unknown signal 35.");
    }
    expect(calledProcessErrorStr('exit 2', 2)).toBe("Command 'exit 2' returned non-zero exit status 2.");
    expect(calledProcessErrorStr('kill $$', -15)).toBe("Command 'kill $$' died with <Signals.SIGTERM: 15>.");
  });

  it('translates newlines universally and builds argv as Popen does', () => {
    expect(translateNewlines('a\r\nb\rc\r\r\nd\n')).toBe('a\nb\nc\n\nd\n');
    expect(popenArgv('echo hi', false)).toEqual(['echo hi']);
    expect(popenArgv('echo hi', true)).toEqual(['/bin/sh', '-c', 'echo hi']);
    expect(popenArgv(['echo $0', 'x'], true)).toEqual(['/bin/sh', '-c', 'echo $0', 'x']);
    expect(popenArgv(['ls', '-l'], false)).toEqual(['ls', '-l']);
  });
});

describe('/v1/subprocess/*', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp({ EXECD_TIMEOUT_MS: '300', EXECD_MAX_OUTPUT_BYTES: '4096' });
  });
  afterAll(async () => {
    await t.close();
  });

  const post = (fn: string, body: unknown) => t.http.post(`/v1/subprocess/${fn}`).set(AUTH).send(body as object);

  describe('validation', () => {
    it.each([
      ['getoutput', {}],
      ['getoutput', { cmd: 42 }],
      ['getoutput', { cmd: 'echo', extra: true }],
      ['getstatusoutput', { cmd: [] }],
      ['check_output', { args: [] }],
      ['check_output', { args: ['echo', 1] }],
      ['check_output', { args: { program: 'echo' } }],
      ['check_output', { args: ['echo'], timeout: 0 }],
      ['check_output', { args: ['echo'], timeout: -1 }],
      ['check_output', { args: ['echo'], timeout: '1' }],
      ['check_output', { args: ['echo'], timeout: 1e9 }],
      ['check_output', { args: ['echo'], text: 'yes' }],
      ['check_output', { args: ['echo'], stderr: 'stdout' }],
      ['check_output', { args: ['echo'], capture_output: true }],
      ['check_output', { args: ['echo'], env: { 'A=B': 'x' } }],
      ['check_output', { args: ['echo'], env: { A: 1 } }],
      ['check_output', { args: ['echo'], env: ['A=1'] }],
      ['check_output', { args: ['echo'], cwd: '' }],
      ['check_output', { args: ['echo', 'a\u0000b'] }],
      ['check_output', { args: ['echo'], env: { A: 'x\u0000' } }],
      ['call', { args: ['true'], input: 'x' }],
      ['call', { args: ['true'], text: true }],
      ['run', { args: ['true'], stdout: 'PIPE' }],
      ['run', { args: ['true'], check: 'true' }],
      ['run', { args: null }],
    ])('%s %j is a 400', async (fn, body) => {
      const res = await post(fn, body);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body.code).toBe('VALIDATION_FAILED');
    });

    it('input that is not base64 without text is a 400', async () => {
      const res = await post('check_output', { args: ['cat'], input: 'plain text!' });
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(res.body.detail).toMatch(/input is not valid base64/);
    });
  });

  it('needs a bearer token', async () => {
    const none = await t.http.post('/v1/subprocess/getoutput').send({ cmd: 'echo hi' });
    expect(none.status).toBe(401);
    expect(none.body.code).toBe('UNAUTHORIZED');
    const wrong = await t.http.post('/v1/subprocess/run').set({ authorization: 'Bearer not-the-token-at-all' }).send({ args: ['true'] });
    expect(wrong.status).toBe(401);
  });

  it('check_output failure is CalledProcessError as a COMMAND_FAILED problem', async () => {
    const res = await post('check_output', { args: 'echo out; echo err >&2; exit 3', shell: true, text: true, stderr: 'PIPE' });
    expect(res.status).toBe(422);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({
      code: 'COMMAND_FAILED',
      status: 422,
      exception: 'CalledProcessError',
      detail: "Command 'echo out; echo err >&2; exit 3' returned non-zero exit status 3.",
      cmd: 'echo out; echo err >&2; exit 3',
      returncode: 3,
      output: 'out\n',
      stderr: 'err\n',
      encoding: 'utf8',
    });
  });

  it('run with check and bytes gives base64 output in the problem', async () => {
    const res = await post('run', { args: ['sh', '-c', 'printf "\\377"; exit 1'], check: true, capture_output: true });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ code: 'COMMAND_FAILED', returncode: 1, output: '/w==', stderr: '', encoding: 'base64' });
  });

  it('a signal is a negative returncode, and CalledProcessError says died with', async () => {
    const ok = await post('run', { args: 'kill -KILL $$', shell: true });
    expect(ok.body).toEqual({ args: 'kill -KILL $$', returncode: -9, stdout: null, stderr: null });
    const res = await post('check_output', { args: ['sh', '-c', 'kill -TERM $$'] });
    expect(res.body.detail).toBe("Command '['sh', '-c', 'kill -TERM $$']' died with <Signals.SIGTERM: 15>.");
    expect(res.body.returncode).toBe(-15);
  });

  it('timeout is TIMEOUT_EXPIRED worded as TimeoutExpired, with the partial output', async () => {
    const res = await post('run', { args: 'echo started; exec sleep 10', shell: true, timeout: 0.2, capture_output: true, text: true });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({
      code: 'TIMEOUT_EXPIRED',
      exception: 'TimeoutExpired',
      detail: "Command 'echo started; exec sleep 10' timed out after 0.2 seconds",
      cmd: 'echo started; exec sleep 10',
      timeout: 0.2,
      output: Buffer.from('started\n').toString('base64'),
      stderr: null,
      encoding: 'base64',
    });
  });

  it('without a timeout the server default (EXECD_TIMEOUT_MS) applies, getoutput included', async () => {
    const res = await post('getoutput', { cmd: 'exec sleep 10' });
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('TIMEOUT_EXPIRED');
    expect(res.body.detail).toBe("Command 'exec sleep 10' timed out after 0.3 seconds");
    expect(res.body.timeout).toBe(0.3);
  });

  it('a missing program is SPAWN_FAILED worded as FileNotFoundError', async () => {
    const res = await post('call', { args: ['no-such-program-execd'] });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({
      code: 'SPAWN_FAILED',
      errno: 'ENOENT',
      exception: 'FileNotFoundError',
      filename: 'no-such-program-execd',
      detail: "[Errno 2] No such file or directory: 'no-such-program-execd'",
    });
  });

  it('a bad cwd is SPAWN_FAILED naming the cwd', async () => {
    const res = await post('run', { args: ['pwd'], cwd: '/no/such/dir/execd' });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ code: 'SPAWN_FAILED', errno: 'ENOENT', filename: '/no/such/dir/execd' });
    expect(res.body.detail).toBe("[Errno 2] No such file or directory: '/no/such/dir/execd'");
  });

  it('a directory as the program is PermissionError', async () => {
    const res = await post('check_output', { args: ['/tmp'] });
    expect(res.body).toMatchObject({ code: 'SPAWN_FAILED', errno: 'EACCES', exception: 'PermissionError', detail: "[Errno 13] Permission denied: '/tmp'" });
  });

  it('stdin is empty, not inherited', async () => {
    const res = await post('check_output', { args: ['cat'], text: true });
    expect(res.body).toEqual({ output: '' });
  });

  it('output past EXECD_MAX_OUTPUT_BYTES is cut and the header says which stream', async () => {
    const res = await post('check_output', { args: 'head -c 10000 /dev/zero | tr "\\0" x', shell: true, text: true });
    expect(res.status).toBe(200);
    expect(res.body.output).toBe('x'.repeat(4096));
    expect(res.headers['x-output-truncated']).toBe('stdout');
    const small = await post('check_output', { args: ['echo', 'hi'], text: true });
    expect(small.headers['x-output-truncated']).toBeUndefined();
    const failed = await post('run', { args: 'head -c 5000 /dev/zero; exit 1', shell: true, capture_output: true, check: true });
    expect(failed.body).toMatchObject({ code: 'COMMAND_FAILED', truncated: ['stdout'] });
    expect(Buffer.from(failed.body.output as string, 'base64')).toHaveLength(4096);
  });

  it('text mode replaces invalid UTF-8 with U+FFFD (Python would raise UnicodeDecodeError)', async () => {
    const res = await post('check_output', { args: ['printf', 'a\\377b'], text: true });
    expect(res.body).toEqual({ output: 'a\uFFFDb' });
  });

  it("env replaces the environment (plus execd's EXECD_INSTANCE marker)", async () => {
    const res = await post('run', { args: ['env'], env: { FOO: 'bar' }, capture_output: true, text: true });
    const lines = (res.body.stdout as string).trim().split('\n').sort();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^EXECD_INSTANCE=[0-9a-f-]{36}$/);
    expect(lines[1]).toBe('FOO=bar');
    const noPath = await post('call', { args: 'printenv PATH', shell: true, env: {} });
    expect(noPath.body).toEqual({ returncode: 1 });
  });
});
