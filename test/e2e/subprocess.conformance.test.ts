/**
 * /v1/subprocess/* against CPython itself: every case runs once through
 * `python3 test/fixtures/pyconform.py` (one process for the whole table) and
 * once through the API of a real listening server, and the two results must
 * agree field by field.
 */
import { spawn } from 'node:child_process';
import { homedir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';

type Fn = 'getoutput' | 'getstatusoutput' | 'check_output' | 'call' | 'run';
interface Case {
  name: string;
  fn: Fn;
  kwargs: Record<string, unknown>;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

const CASES: Case[] = [
  // getoutput / getstatusoutput: shell, text, stderr merged, one trailing newline stripped
  { name: 'getoutput echo', fn: 'getoutput', kwargs: { cmd: 'echo hello' } },
  { name: 'getoutput universal newlines', fn: 'getoutput', kwargs: { cmd: 'printf "a\\r\\nb\\rc\\r\\r\\n"' } },
  { name: 'getoutput strips only one trailing newline', fn: 'getoutput', kwargs: { cmd: 'printf "x\\n\\n\\n"' } },
  { name: 'getoutput without trailing newline', fn: 'getoutput', kwargs: { cmd: 'printf "no newline"' } },
  { name: 'getoutput merges stderr', fn: 'getoutput', kwargs: { cmd: 'echo out; echo err >&2; echo out2' } },
  { name: 'getoutput unicode', fn: 'getoutput', kwargs: { cmd: 'echo "héllo ✓ 日本語 🎉"' } },
  { name: 'getoutput empty command', fn: 'getoutput', kwargs: { cmd: '' } },
  { name: 'getstatusoutput exit 3', fn: 'getstatusoutput', kwargs: { cmd: 'echo before; exit 3' } },
  { name: 'getstatusoutput missing command is 127', fn: 'getstatusoutput', kwargs: { cmd: 'no-such-command-execd-test' } },
  { name: 'getstatusoutput kill -9 $$', fn: 'getstatusoutput', kwargs: { cmd: 'echo dying; kill -9 $$' } },
  { name: 'getstatusoutput kill -TERM $$', fn: 'getstatusoutput', kwargs: { cmd: 'kill -TERM $$' } },
  { name: 'getstatusoutput list cmd', fn: 'getstatusoutput', kwargs: { cmd: ['echo "$0-$1"; exit 5', 'a', 'b'] } },
  { name: 'getstatusoutput stdin is empty', fn: 'getstatusoutput', kwargs: { cmd: 'cat; echo "rc=$?"' } },

  // check_output
  { name: 'check_output bytes', fn: 'check_output', kwargs: { args: ['echo', 'hi'] } },
  { name: 'check_output bytes keep \\r\\n', fn: 'check_output', kwargs: { args: ['printf', 'a\r\nb\r'] } },
  { name: 'check_output text universal newlines', fn: 'check_output', kwargs: { args: ['printf', 'a\r\nb\rc\r\r\nd'], text: true } },
  { name: 'check_output text keeps trailing newlines', fn: 'check_output', kwargs: { args: ['printf', 'x\n\n'], text: true } },
  { name: 'check_output text keeps a BOM', fn: 'check_output', kwargs: { args: ['printf', '\\357\\273\\277bom'], text: true } },
  { name: 'check_output shell string', fn: 'check_output', kwargs: { args: 'echo $((6*7))', shell: true, text: true } },
  { name: 'check_output list with shell=True', fn: 'check_output', kwargs: { args: ['echo "$0 $1"', 'x', 'y z'], shell: true, text: true } },
  { name: 'check_output exit 3', fn: 'check_output', kwargs: { args: 'exit 3', shell: true } },
  { name: 'check_output failure keeps output (text)', fn: 'check_output', kwargs: { args: "echo partial; echo 'q'; exit 2", shell: true, text: true } },
  { name: 'check_output failure of a list', fn: 'check_output', kwargs: { args: ['sh', '-c', 'exit 1', "it's"] } },
  { name: 'check_output killed by SIGKILL', fn: 'check_output', kwargs: { args: 'kill -9 $$', shell: true } },
  { name: 'check_output killed by SIGTERM', fn: 'check_output', kwargs: { args: 'kill -TERM $$', shell: true, text: true } },
  { name: 'check_output stderr discarded', fn: 'check_output', kwargs: { args: 'echo out; echo err >&2', shell: true, text: true } },
  { name: 'check_output stderr DEVNULL', fn: 'check_output', kwargs: { args: 'echo out; echo err >&2', shell: true, text: true, stderr: 'DEVNULL' } },
  { name: 'check_output stderr STDOUT', fn: 'check_output', kwargs: { args: 'echo out; echo err >&2; echo out2', shell: true, text: true, stderr: 'STDOUT' } },
  { name: 'check_output stderr PIPE on failure', fn: 'check_output', kwargs: { args: 'echo out; echo err >&2; exit 1', shell: true, text: true, stderr: 'PIPE' } },
  { name: 'check_output stderr PIPE on success', fn: 'check_output', kwargs: { args: 'echo out; echo err >&2', shell: true, stderr: 'PIPE' } },
  { name: 'check_output input bytes to cat', fn: 'check_output', kwargs: { args: ['cat'], input: Buffer.from([0, 1, 2, 255, 13, 10]).toString('base64') } },
  { name: 'check_output input text to cat', fn: 'check_output', kwargs: { args: ['cat'], input: 'line1\r\nline2\rü\n', text: true } },
  { name: 'check_output input to wc', fn: 'check_output', kwargs: { args: 'wc -c', shell: true, input: b64('12345'), text: false } },
  { name: 'check_output missing program', fn: 'check_output', kwargs: { args: ['no-such-program-execd-test', '-x'] } },
  { name: 'check_output string without shell is one program', fn: 'check_output', kwargs: { args: 'echo hi' } },
  { name: 'check_output not executable', fn: 'check_output', kwargs: { args: ['/etc/passwd'] } },
  { name: 'check_output cwd', fn: 'check_output', kwargs: { args: ['pwd'], cwd: '/tmp', text: true } },
  { name: 'check_output missing cwd', fn: 'check_output', kwargs: { args: ['pwd'], cwd: '/no/such/dir-execd' } },
  { name: 'check_output cwd not a directory', fn: 'check_output', kwargs: { args: ['pwd'], cwd: '/etc/passwd' } },
  { name: 'check_output env replaces (printenv)', fn: 'check_output', kwargs: { args: ['printenv', 'FOO'], env: { FOO: 'bar' }, text: true } },
  { name: 'check_output env replaces: no PATH', fn: 'check_output', kwargs: { args: 'printenv PATH; echo "rc=$?"', shell: true, env: { FOO: 'bar' }, text: true } },
  { name: 'check_output env program sees only env', fn: 'check_output', kwargs: { args: ['env'], env: { FOO: 'bar', 'A B': 'x y' }, text: true, cwd: '/tmp' } },
  { name: 'check_output env={} with shell', fn: 'check_output', kwargs: { args: 'env', shell: true, env: {}, text: true, cwd: '/tmp' } },
  { name: 'check_output env with shell', fn: 'check_output', kwargs: { args: 'env | sort', shell: true, env: { FOO: 'bar' }, text: true, cwd: '/tmp' } },
  { name: 'check_output timeout with partial output', fn: 'check_output', kwargs: { args: 'echo start; exec sleep 10', shell: true, timeout: 0.5 } },
  { name: 'check_output timeout in text mode', fn: 'check_output', kwargs: { args: 'printf "a\\r\\nb"; exec sleep 10', shell: true, timeout: 0.25, text: true } },
  { name: 'check_output timeout without output', fn: 'check_output', kwargs: { args: ['sleep', '10'], timeout: 0.3 } },
  { name: 'check_output timeout of 1 second', fn: 'check_output', kwargs: { args: ['sleep', '10'], timeout: 1 } },
  { name: 'check_output within timeout', fn: 'check_output', kwargs: { args: ['echo', 'quick'], timeout: 20, text: true } },

  // call
  { name: 'call true', fn: 'call', kwargs: { args: ['true'] } },
  { name: 'call false', fn: 'call', kwargs: { args: 'false' } },
  { name: 'call exit 7 with output', fn: 'call', kwargs: { args: 'echo ignored; echo ignored >&2; exit 7', shell: true } },
  { name: 'call kill -TERM $$', fn: 'call', kwargs: { args: 'kill -TERM $$', shell: true } },
  { name: 'call missing program', fn: 'call', kwargs: { args: ['no-such-program-execd-test'] } },
  { name: 'call timeout', fn: 'call', kwargs: { args: ['sleep', '10'], timeout: 0.25 } },
  { name: 'call cwd and env', fn: 'call', kwargs: { args: 'test "$(pwd)" = /tmp && test "$FOO" = bar', shell: true, cwd: '/tmp', env: { FOO: 'bar' } } },

  // run
  { name: 'run without capture', fn: 'run', kwargs: { args: ['echo', 'x'] } },
  { name: 'run capture text', fn: 'run', kwargs: { args: ['sh', '-c', 'echo o; echo e >&2; exit 4'], capture_output: true, text: true } },
  { name: 'run capture bytes', fn: 'run', kwargs: { args: ['sh', '-c', 'printf "o\\r\\n"; printf "e\\r" >&2'], capture_output: true } },
  { name: 'run check failure with capture', fn: 'run', kwargs: { args: ['sh', '-c', 'echo o; echo e >&2; exit 4'], capture_output: true, text: true, check: true } },
  { name: 'run check failure without capture', fn: 'run', kwargs: { args: 'exit 9', shell: true, check: true } },
  { name: 'run check success', fn: 'run', kwargs: { args: 'echo fine', shell: true, check: true, capture_output: true } },
  { name: 'run check killed', fn: 'run', kwargs: { args: 'kill -9 $$', shell: true, check: true } },
  { name: 'run killed without check', fn: 'run', kwargs: { args: 'kill -KILL $$', shell: true, capture_output: true } },
  { name: 'run input text', fn: 'run', kwargs: { args: ['tr', 'a-z', 'A-Z'], input: 'héllo\r\nworld', text: true, capture_output: true } },
  { name: 'run input bytes', fn: 'run', kwargs: { args: ['od', '-An', '-tx1'], input: Buffer.from([0xff, 0x00, 0x0d]).toString('base64'), capture_output: true } },
  { name: 'run env and shell', fn: 'run', kwargs: { args: 'printf "%s|%s" "$FOO" "$HOME"', shell: true, env: { FOO: 'bär' }, capture_output: true, text: true } },
  { name: 'run unicode args', fn: 'run', kwargs: { args: ['printf', '%s', 'ünï ✓ 🎉'], capture_output: true, text: true } },
  { name: 'run timeout', fn: 'run', kwargs: { args: 'echo tick; echo tock >&2; exec sleep 10', shell: true, timeout: 0.5, capture_output: true } },
  { name: 'run missing program', fn: 'run', kwargs: { args: 'no-such-program-execd-test', capture_output: true } },
];

/** The API's variant of a result, in pyconform's shape. */
interface Result {
  [key: string]: unknown;
}

/** Children of execd carry EXECD_INSTANCE (the server's marker for its own processes): the one documented extra variable. */
const withoutMarker = (text: unknown) => (typeof text === 'string' ? text.replace(/^EXECD_INSTANCE=.*\n/m, '') : text);

function normalizeApi(status: number, body: Record<string, unknown>): Result {
  if (status === 200) {
    const out = { ...body };
    for (const key of ['output', 'stdout']) if (key in out) out[key] = withoutMarker(out[key]);
    return out;
  }
  if (status !== 422) return { unexpectedStatus: status, body };
  return {
    exception: body.exception,
    str: body.detail,
    returncode: body.returncode ?? null,
    output: body.output ?? null,
    stderr: body.stderr ?? null,
    cmd: body.cmd ?? null,
    filename: body.filename ?? null,
  };
}

/** The environment execd gives its children (buildEnv's base), so that Python's children see the same. */
function childEnv(app: TestApp): Record<string, string> {
  return { PATH: app.config.childPath, HOME: homedir(), LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', SHELL: '/bin/sh', TERM: 'dumb' };
}

/** Run every case through CPython in one process; its children start in the same cwd execd's do (the home directory). */
function runPython(cases: Case[], env: Record<string, string>): Promise<Result[]> {
  const script = fileURLToPath(new URL('../fixtures/pyconform.py', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [script], { env, cwd: homedir(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`pyconform.py exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as Result[]);
    });
    child.stdin.end(JSON.stringify(cases.map(({ fn, kwargs }) => ({ fn, kwargs }))));
  });
}

let app: TestApp;
let python: Promise<Result[]>;
let api: Promise<Result[]>;

beforeAll(async () => {
  app = await startApp();
  python = runPython(CASES, childEnv(app));
  api = (async () => {
    const results: Result[] = [];
    for (const c of CASES) {
      const res = await app.http.post(`/v1/subprocess/${c.fn}`).set(AUTH).send(c.kwargs);
      results.push(normalizeApi(res.status, res.body as Record<string, unknown>));
    }
    return results;
  })();
  await Promise.all([python, api]);
}, 120_000);

afterAll(async () => {
  await app?.close();
});

describe('/v1/subprocess/* matches CPython subprocess', () => {
  it('has a table of at least 30 cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(30);
  });

  it.each(CASES.map((c, i) => [c.name, i] as const))('%s', async (_name, i) => {
    const [py, ours] = await Promise.all([python, api]);
    expect(ours[i], JSON.stringify(CASES[i]!.kwargs)).toEqual(py[i]);
  });
});

describe('stderr=STDOUT without a shell matches CPython', () => {
  // Regression: the merge trampoline (`/bin/sh -c 'exec "$0" "$@" 2>&1'`) once gave the program its
  // resolved path as argv[0], and dash exported PWD into an `env=` environment.
  it('stderr=STDOUT without a shell keeps argv[0] as given', async () => {
    const c: Case = { name: 'argv0', fn: 'check_output', kwargs: { args: ['ls', '/no/such/path-execd'], stderr: 'STDOUT', text: true } };
    const [py] = await runPython([c], childEnv(app));
    const res = await app.http.post('/v1/subprocess/check_output').set(AUTH).send(c.kwargs);
    expect(normalizeApi(res.status, res.body)).toEqual(py);
  });

  it('stderr=STDOUT without a shell adds nothing to env=', async () => {
    const c: Case = { name: 'env', fn: 'check_output', kwargs: { args: ['env'], env: { FOO: 'bar' }, stderr: 'STDOUT', text: true } };
    const [py] = await runPython([c], childEnv(app));
    const res = await app.http.post('/v1/subprocess/check_output').set(AUTH).send(c.kwargs);
    expect(normalizeApi(res.status, res.body)).toEqual(py);
  });
});
