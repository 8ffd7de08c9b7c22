import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ROOT, SERVER_TOKEN, startServer, stopServer, type ServerProcess } from '../helpers/server.js';
import { dropProxy, runCli, startCli } from './cli-helpers.js';

// The `execd` command as a user runs it: a child process of bin/execd.js against a real server.

let server: ServerProcess;
/** A second server, whose policy allows only `true`. */
let strict: ServerProcess;
let env: Record<string, string>;
const dir = mkdtempSync(join(tmpdir(), 'execd-cli-'));

beforeAll(async () => {
  writeFileSync(join(dir, 'policy.json'), JSON.stringify({ rules: [{ name: 'only-true', executables: ['true'] }] }));
  [server, strict] = await Promise.all([
    startServer({ EXECD_KILL_GRACE_MS: '300', EXECD_NOTIFY_ALLOW: 'http://127.0.0.1', EXECD_NOTIFY_SECRET: 'cli-test-notify-secret-0123456789abcdef' }),
    startServer({ EXECD_POLICY_FILE: join(dir, 'policy.json') }),
  ]);
  env = { EXECD_URL: server.url, EXECD_TOKEN: SERVER_TOKEN };
});
afterAll(() => {
  stopServer(server);
  stopServer(strict);
  rmSync(dir, { recursive: true, force: true });
});

const text = (b: Buffer) => b.toString('utf8');

describe.concurrent('execd run', () => {
  test("the command's stdout on stdout and stderr on stderr, exact bytes (binary too), and its exit code", async () => {
    const r = await runCli(['run', '--', 'sh', '-c', "printf 'a\\000\\377\\376b\\n'; printf 'e\\000rr' >&2; exit 3"], env);
    expect(r.stdout).toEqual(Buffer.from([0x61, 0, 0xff, 0xfe, 0x62, 0x0a]));
    expect(r.stderr).toEqual(Buffer.from('e\0rr'));
    expect(r.code).toBe(3);
  });

  test('exit codes: 0, 128+9 for SIGKILL, 124 on timeout', async () => {
    const [ok, killed, timedOut] = await Promise.all([
      runCli(['run', 'true'], env),
      runCli(['run', '--', 'sh', '-c', 'kill -9 $$'], env),
      runCli(['run', '--timeout', '300ms', '--', 'sleep', '10'], env),
    ]);
    expect([ok.code, killed.code, timedOut.code]).toEqual([0, 137, 124]);
    expect(text(timedOut.stderr)).toBe('');
  });

  test('-i sends local stdin, byte for byte; options after the program go to the program', async () => {
    const input = Buffer.from([...Array(256).keys()]);
    const r = await runCli(['run', '-i', '--', 'cat'], env, input);
    expect(r.stdout).toEqual(input);
    expect(r.code).toBe(0);
    const ls = await runCli(['run', 'sh', '-c', 'echo "$1" "$2"', 'x', '-l', '--json'], env);
    expect(text(ls.stdout)).toBe('-l --json\n');
  });

  test('--cwd, -e K=V, -e K from the local environment, --shell', async () => {
    const r = await runCli(['run', '--cwd', '/tmp', '-e', 'A=1', '-e', 'B', '--shell', '--', 'echo $A $B $(pwd)'], { ...env, B: 'two' });
    expect(text(r.stdout)).toBe('1 two /tmp\n');
  });

  test('--json prints the RunResult, parseable', async () => {
    const r = await runCli(['run', '--json', '--', 'sh', '-c', 'echo hi; exit 2'], env);
    const result = JSON.parse(text(r.stdout));
    expect(result).toMatchObject({ exitCode: 2, returncode: 2, stdout: 'hi\n', encoding: 'utf8', timedOut: false });
    expect(r.code).toBe(2);
  });

  test('a program that cannot start: 127 and one line naming SPAWN_FAILED', async () => {
    const r = await runCli(['run', '--', 'no-such-program-here'], env);
    expect(r.code).toBe(127);
    expect(text(r.stderr)).toMatch(/^execd: SPAWN_FAILED: .+\n$/);
  });
});

describe.concurrent('errors', () => {
  test('an unreachable server: 69 and one clear line', async () => {
    const proxy = await dropProxy(server.url);
    const url = proxy.url;
    await proxy.close(); // a port nobody listens on any more
    const r = await runCli(['run', '--url', url, '--', 'true'], env);
    expect(r.code).toBe(69);
    expect(text(r.stderr)).toMatch(new RegExp(`^execd: cannot reach execd at ${url} \\(ECONNREFUSED\\): is the server running\\? .*\\n$`));
  });

  test('a bad token: 65 (refused), code and detail on one line', async () => {
    const r = await runCli(['info'], { ...env, EXECD_TOKEN: 'not-the-token-0123456789' });
    expect(r.code).toBe(65);
    expect(text(r.stderr)).toMatch(/^execd: UNAUTHORIZED: .+\n$/);
  });

  test('a usage error: 64, and --token-file that cannot be read says so', async () => {
    const [bad, missing, noFile] = await Promise.all([
      runCli(['run', '--timeout', 'soon', '--', 'true'], env),
      runCli(['tail'], env),
      runCli(['info', '--token-file', '/nonexistent/token'], env),
    ]);
    expect([bad.code, missing.code, noFile.code]).toEqual([64, 64, 64]);
    expect(text(bad.stderr)).toContain('--timeout must be a duration');
    expect(text(missing.stderr)).toContain("missing required argument 'id'");
    expect(text(noFile.stderr)).toContain('cannot read the token file /nonexistent/token: ENOENT');
  });

  test('a command the policy refuses (403): 65 and one line with the code and the rule; the token from --token-file', async () => {
    writeFileSync(join(dir, 'token'), `${SERVER_TOKEN}\n`, { mode: 0o600 });
    const args = ['--url', strict.url, '--token-file', join(dir, 'token')];
    const [refused, allowed, explained] = await Promise.all([
      runCli(['run', ...args, '--', 'ls', '/'], {}),
      runCli(['run', ...args, '--', 'true'], {}),
      runCli(['explain', ...args, '--json', '--', 'ls'], {}),
    ]);
    expect(refused.code).toBe(65);
    expect(text(refused.stderr)).toMatch(/^execd: COMMAND_NOT_ALLOWED: .*"only-true".*\n$/);
    expect(refused.stdout.length).toBe(0);
    expect(allowed.code).toBe(0);
    expect(explained.code).toBe(65);
    expect(JSON.parse(text(explained.stdout))).toMatchObject({ allowed: false, rule: 'only-true' });
  });
});

describe.concurrent('execd submit and tail', () => {
  test('submit prints the id; tail replays both streams apart and exits with the job\'s code; --stdout-offset resumes', async () => {
    const submitted = await runCli(['submit', '--', 'sh', '-c', 'echo one; echo two >&2; echo three; exit 4'], env);
    expect(submitted.code).toBe(0);
    const id = text(submitted.stdout).trim();
    expect(id).toMatch(/^[\w-]+$/);
    const [all, rest, errOnly] = await Promise.all([
      runCli(['tail', id], env),
      runCli(['tail', id, '--stdout-offset', '4', '--stderr-offset', '4'], env),
      runCli(['tail', id, '--stderr'], env),
    ]);
    expect([text(all.stdout), text(all.stderr), all.code]).toEqual(['one\nthree\n', 'two\n', 4]);
    expect([text(rest.stdout), text(rest.stderr), rest.code]).toEqual(['three\n', '', 4]);
    expect([text(errOnly.stdout), text(errOnly.stderr)]).toEqual(['', 'two\n']);
  });

  test('submit --follow through server-side connection drops: every line once, then the job\'s code', async () => {
    const proxy = await dropProxy(server.url);
    const dir = mkdtempSync(join(tmpdir(), 'execd-cli-'));
    try {
      // The job waits for the test's go-ahead after each half, so that both drops happen while it runs.
      const half = (from: number, to: number) => `for i in $(seq ${from} ${to}); do echo line $i; echo err $i >&2; done`;
      const waitFor = (name: string) => `while [ ! -e ${dir}/${name} ]; do sleep 0.02; done`;
      const script = `${half(1, 15)}; ${waitFor('one')}; ${half(16, 30)}; ${waitFor('two')}; exit 5`;
      const cli = startCli(['submit', '--follow', '--', 'sh', '-c', script], { ...env, EXECD_URL: proxy.url });
      await cli.waitForStdout((s) => s.includes('line 15\n'));
      proxy.drop();
      writeFileSync(join(dir, 'one'), '');
      await cli.waitForStdout((s) => s.includes('line 30\n'));
      proxy.drop();
      writeFileSync(join(dir, 'two'), '');
      const r = await cli.done;
      const expected = (prefix: string) => Array.from({ length: 30 }, (_, i) => `${prefix} ${i + 1}\n`).join('');
      expect(text(r.stdout)).toBe(expected('line'));
      expect(text(r.stderr)).toBe(expected('err'));
      expect(r.code).toBe(5);
      expect(proxy.accepted()).toBeGreaterThanOrEqual(4); // the submit, the stream, and a stream after each drop
    } finally {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Ctrl-C while following detaches: the job keeps running, and stderr says how to re-attach', async () => {
    const cli = startCli(['submit', '--follow', '--', 'sh', '-c', 'echo started; sleep 30'], env);
    await cli.waitForStdout((s) => s === 'started\n');
    cli.child.kill('SIGINT');
    const r = await cli.done;
    expect(r.code).toBe(130);
    const m = /execd tail (\S+) --stdout-offset 8 --stderr-offset 0\n$/.exec(text(r.stderr));
    expect(m, text(r.stderr)).not.toBeNull();
    const id = m![1]!;
    const job = await (await server.api(`/v1/jobs/${id}`)).json();
    expect(job.state).toBe('running');
    const canceled = await runCli(['cancel', id], env);
    expect([text(canceled.stdout), canceled.code]).toEqual([`${id} canceled\n`, 0]);
  });

  test('--sig-proxy forwards Ctrl-C to the job, and execd exits with what the job made of it', async () => {
    const script = 'trap "echo got INT; exit 7" INT; echo ready; sleep 30 & wait';
    const cli = startCli(['submit', '--follow', '--sig-proxy', '--', 'sh', '-c', script], env);
    await cli.waitForStdout((s) => s === 'ready\n');
    cli.child.kill('SIGINT');
    const r = await cli.done;
    expect([text(r.stdout), r.code]).toEqual(['ready\ngot INT\n', 7]);
  });

  test('submit -i sends local stdin to the job; --json everywhere is parseable', async () => {
    const input = Buffer.from([0, 1, 2, 0xff, 0x0a]);
    const r = await runCli(['submit', '-i', '--follow', '--', 'cat'], env, input);
    expect(r.stdout).toEqual(input);
    const submitted = JSON.parse(text((await runCli(['submit', '--json', '--queue', 'default', '--', 'true'], env)).stdout));
    expect(submitted).toMatchObject({ queue: 'default', spec: { argv: ['true'] } });
    await server.api(`/v1/jobs/${submitted.id}?waitMs=10000`);
    const outputs = await Promise.all([['jobs'], ['show', submitted.id], ['queues'], ['info'], ['ps', '--execd']].map((a) => runCli([...a, '--json'], env)));
    for (const o of outputs) expect(o.code, text(o.stderr)).toBe(0);
    const [jobs, show, queues, info, ps] = outputs.map((o) => JSON.parse(text(o.stdout)));
    expect(jobs.items.some((j: { id: string }) => j.id === submitted.id)).toBe(true);
    expect(show).toMatchObject({ id: submitted.id, state: 'succeeded', result: { exitCode: 0 } });
    expect(queues[0]).toMatchObject({ name: 'default' });
    expect(info.pid).toBe(server.child.pid);
    expect(Array.isArray(ps.items)).toBe(true);
  });

  test('rm forgets a finished job; then show is a 404: 65 with NOT_FOUND', async () => {
    const id = text((await runCli(['submit', '--', 'true'], env)).stdout).trim();
    await server.api(`/v1/jobs/${id}?waitMs=10000`);
    expect((await runCli(['rm', id], env)).code).toBe(0);
    const gone = await runCli(['show', id], env);
    expect(gone.code).toBe(65);
    expect(text(gone.stderr)).toMatch(/^execd: NOT_FOUND: .+\n$/);
  });
});

describe('terminals and pipes', () => {
  // util-linux's script(1) gives the command a terminal of its own.
  const hasScript = spawnSync('script', ['--version']).status === 0;
  test.skipIf(!hasScript)('a table is bold and colored on a terminal; plain with --no-color, NO_COLOR, or piped', async () => {
    const id = text((await runCli(['submit', '--', 'true'], env)).stdout).trim();
    await server.api(`/v1/jobs/${id}?waitMs=10000`);
    const onTerminal = (args: string, extra: Record<string, string> = {}) =>
      execFileSync('script', ['-qec', `node bin/execd.js ${args}`, '/dev/null'], {
        cwd: ROOT, env: { PATH: process.env.PATH!, EXECD_CLI_FROM_SOURCE: '1', TERM: 'xterm', ...env, ...extra }, encoding: 'utf8',
      });
    const colored = onTerminal(`jobs -s succeeded`);
    expect(colored).toContain('\x1b[1mID ');
    expect(colored).toContain('\x1b[32msucceeded\x1b[0m');
    for (const plain of [onTerminal('jobs -s succeeded --no-color'), onTerminal('--no-color jobs -s succeeded'), onTerminal('jobs -s succeeded', { NO_COLOR: '1' })]) {
      expect(plain).not.toContain('\x1b[');
      expect(plain).toMatch(/^ID +STATE +QUEUE +CREATED +EXIT +COMMAND\r?\n/);
    }
    const piped = await runCli(['jobs', '-s', 'succeeded'], env);
    expect(text(piped.stdout)).not.toContain('\x1b[');
    expect(text(piped.stdout)).toContain(`${id}  succeeded  default`);
  });
});

describe('help and completion', () => {
  test('execd help run documents the options; completion scripts are valid shell', async () => {
    const [help, bash, zsh] = await Promise.all([runCli(['help', 'run'], env), runCli(['completion', 'bash'], env), runCli(['completion', 'zsh'], env)]);
    expect(help.code).toBe(0);
    expect(text(help.stdout)).toContain('Usage: execd run [options] <argv...>');
    expect(text(help.stdout)).toContain('--timeout <duration>');
    expect(text(bash.stdout)).toContain('complete -F _execd execd');
    expect(text(zsh.stdout)).toContain('compdef _execd execd');
    execFileSync('bash', ['-n'], { input: bash.stdout }); // throws on a syntax error
    const words = execFileSync('bash', ['-c', `${text(bash.stdout)}\nCOMP_WORDS=(execd su); COMP_CWORD=1; _execd; echo "\${COMPREPLY[@]}"`]);
    expect(String(words).trim()).toBe('submit');
  });
});

// Each test runs the CLI a few times one after the other: on a loaded machine that is slow, hence the longer timeout.
describe.concurrent('labels, retries, delayed starts, provenance, callbacks', { timeout: 60_000 }, () => {
  const unique = () => `r${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const submit = async (args: string[]) => {
    const r = await runCli(['submit', ...args], env);
    expect(r.code, text(r.stderr)).toBe(0);
    return text(r.stdout).trim();
  };

  test('submit -l labels; jobs -l filters (repeatable, ANDed) and shows a LABELS column; show lists labels and the node', async () => {
    const run = unique();
    const [web, db] = await Promise.all([
      submit(['-l', `run=${run}`, '--label', 'team=web', '-l', 'expr=a=b', '--', 'true']),
      submit(['-l', `run=${run}`, '-l', 'team=db', '--', 'true']),
    ]);
    await Promise.all([web, db].map((id) => server.api(`/v1/jobs/${id}?waitMs=10000`)));
    const [both, onlyWeb, byValue, none, table, show, info, infoText] = await Promise.all([
      runCli(['jobs', '--json', '-l', `run=${run}`], env),
      runCli(['jobs', '--json', '-l', `run=${run}`, '-l', 'team=web'], env),
      runCli(['jobs', '--json', '-l', 'expr=a=b', '-l', `run=${run}`], env), // split at the first =
      runCli(['jobs', '--json', '-l', `run=${run}`, '-l', 'team=ops'], env),
      runCli(['jobs', '-l', `run=${run}`, '-l', 'team=web'], env),
      runCli(['show', web], env),
      runCli(['info', '--json'], env),
      runCli(['info'], env),
    ]);
    const ids = (r: { stdout: Buffer }) => (JSON.parse(text(r.stdout)) as { items: { id: string }[] }).items.map((j) => j.id).sort();
    expect(ids(both)).toEqual([web, db].sort());
    expect(ids(onlyWeb)).toEqual([web]);
    expect(ids(byValue)).toEqual([web]);
    expect(ids(none)).toEqual([]);
    expect(text(table.stdout)).toMatch(/^ID +STATE +QUEUE +CREATED +EXIT +LABELS +COMMAND\n/);
    expect(text(table.stdout)).toContain(`run=${run} team=web expr=a=b  true`);

    const node = (JSON.parse(text(info.stdout)) as { node: string }).node;
    expect(node).toMatch(/\S/);
    expect(text(show.stdout)).toMatch(new RegExp(`^labels +run=${run} team=web expr=a=b$`, 'm'));
    expect(text(show.stdout)).toMatch(new RegExp(`^node +${node}$`, 'm'));
    expect(text(show.stdout)).toMatch(/^attempt +1\/1$/m);
    expect(text(infoText.stdout)).toMatch(new RegExp(`^node +${node}$`, 'm'));
  });

  test('--retry 2 --backoff 50ms: tail writes both attempts and exits with the last one\'s code; show lists each attempt', async () => {
    const id = await submit(['--retry', '2', '--backoff', '50ms', '--backoff-kind', 'fixed', '--', 'sh', '-c', 'echo try; exit 3']);
    const r = await runCli(['tail', id], env);
    expect([text(r.stdout), r.code]).toEqual(['try\ntry\n', 3]);
    const [asJson, asText] = await Promise.all([runCli(['show', id, '--json'], env), runCli(['show', id], env)]);
    const job = JSON.parse(text(asJson.stdout));
    expect(job).toMatchObject({ state: 'failed', attempt: 2, maxAttempts: 2, spec: { retry: { attempts: 2, backoffMs: 50, backoff: 'fixed' } } });
    expect(job.attempts).toHaveLength(2);
    expect(job.attempts.map((a: { state: string; output: object }) => [a.state, a.output])).toEqual([
      ['failed', { stdout: 0, stderr: 0 }],
      ['failed', { stdout: 4, stderr: 0 }],
    ]);
    expect(Date.parse(job.attempts[1].startedAt) - Date.parse(job.attempts[0].finishedAt)).toBeGreaterThanOrEqual(45);
    const shown = text(asText.stdout);
    expect(shown).toMatch(/^state +failed$/m);
    expect(shown).toMatch(/^attempt +2\/2$/m);
    expect(shown).toMatch(/^retry +fixed backoff from 50 ms, on failed, timed_out$/m);
    expect(shown).toMatch(/^# +NODE +HOST +STATE +EXIT +STARTED +FINISHED +STDOUT@ +STDERR@$/m);
    expect(shown).toMatch(new RegExp(`^1 +${job.attempts[0].node} +${job.attempts[0].host} +failed +3 +.+ +0 +0$`, 'm'));
    expect(shown).toMatch(new RegExp(`^2 +${job.attempts[1].node} +\\S+ +failed +3 +.+ +4 +0$`, 'm'));
  });

  test('--delay: the job is scheduled (jobs -s scheduled, show says when it runs), and cancel ends it before it ever runs', async () => {
    const run = unique();
    const before = Date.now();
    const [id, past] = await Promise.all([
      submit(['--delay', '30s', '-l', `run=${run}`, '--', 'true']),
      submit(['--not-before', new Date(Date.now() - 1000).toISOString(), '--', 'true']), // a past time: queued at once
    ]);
    const [listed, shown] = await Promise.all([runCli(['jobs', '--json', '-s', 'scheduled', '-l', `run=${run}`], env), runCli(['show', id], env)]);
    expect((JSON.parse(text(listed.stdout)) as { items: { id: string; state: string }[] }).items.map((j) => [j.id, j.state])).toEqual([[id, 'scheduled']]);
    expect(text(shown.stdout)).toMatch(/^state +scheduled$/m);
    const runAt = /^run at +(\S+)$/m.exec(text(shown.stdout))?.[1];
    // 30 s from the submission (however long the CLI took to start on a loaded machine), and still to come.
    expect(Date.parse(runAt!) - before).toBeGreaterThanOrEqual(29_000);
    expect(Date.parse(runAt!)).toBeGreaterThan(Date.now());
    const canceled = await runCli(['cancel', id, '--json'], env);
    expect(canceled.code).toBe(0);
    expect(JSON.parse(text(canceled.stdout))).toMatchObject({ id, state: 'canceled', attempt: 0, attempts: [], runAt: null });
    expect(await (await server.api(`/v1/jobs/${past}?waitMs=10000`)).json()).toMatchObject({ state: 'succeeded', spec: { notBefore: expect.any(String) } });
  });

  test('--notify: the callback is delivered and show says so; a host the server does not allow is refused (65)', async () => {
    const got: string[] = [];
    const receiver: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => (got.push(body), res.end('ok')));
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;
      const id = JSON.parse(text((await runCli(['submit', '--json', '--notify', url, '--', 'true'], env)).stdout)).id as string;
      await expect.poll(() => got.length, { timeout: 10_000 }).toBe(1);
      expect(JSON.parse(got[0]!)).toMatchObject({ id, state: 'succeeded' });
      await expect.poll(async () => (await (await server.api(`/v1/jobs/${id}`)).json()).notify?.state, { timeout: 5000 }).toBe('delivered');
      const [shown, refused] = await Promise.all([
        runCli(['show', id], env).then((r) => text(r.stdout)),
        runCli(['submit', '--notify', 'https://example.com/hook', '--', 'true'], env),
      ]);
      expect(shown).toMatch(new RegExp(`^notify +delivered ${url} \\(1 try, last HTTP 200, at \\S+\\)$`, 'm'));
      expect(refused.code).toBe(65);
      expect(text(refused.stderr)).toMatch(/^execd: FORBIDDEN: .*EXECD_NOTIFY_ALLOW.*\n$/);
    } finally {
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });

  test('usage errors (64, nothing submitted): a label without =, retry options without --retry, --delay with --not-before…', async () => {
    const run = unique();
    const bad = await Promise.all(
      [
        ['submit', '--label', 'team', '--', 'true'],
        ['submit', '-l', '=web', '--', 'true'],
        ['submit', '-l', 'team=a', '-l', 'team=b', '--', 'true'],
        ['jobs', '-l', 'team'],
        ['submit', '--backoff', '1s', '--', 'true'],
        ['submit', '--retry', '0', '--', 'true'],
        ['submit', '--retry', '2', '--retry-on', 'failed,canceled', '--', 'true'],
        ['submit', '--retry', '2', '--backoff-kind', 'linear', '--', 'true'],
        ['submit', '--delay', '1s', '--not-before', '2030-01-01T00:00:00Z', '--', 'true'],
        ['submit', '--not-before', 'tomorrow', '--', 'true'],
        ['jobs', '-s', 'waiting'],
      ].map((args) => runCli(args[0] === 'submit' ? ['submit', '-l', `run=${run}`, ...args.slice(1)] : args, env)),
    );
    for (const r of bad) expect([r.code, text(r.stdout)], text(r.stderr)).toEqual([64, '']);
    expect(bad.map((r) => text(r.stderr).split('\n')[0])).toEqual([
      'execd: --label wants key=value (got "team") (see execd help)',
      'execd: --label wants key=value (got "=web") (see execd help)',
      'execd: --label team is given twice (see execd help)',
      'execd: --label wants key=value (got "team") (see execd help)',
      'execd: --backoff needs --retry N (see execd help)',
      'execd: --retry must be a number of attempts, 1 or more (got "0") (see execd help)',
      'execd: --retry-on takes failed, timed_out, lost, comma-separated (got "failed,canceled") (see execd help)',
      expect.stringContaining("option '--backoff-kind <kind>' argument 'linear' is invalid"),
      'execd: give --delay or --not-before, not both (see execd help)',
      expect.stringContaining('execd: --not-before must be an ISO 8601 time'),
      expect.stringContaining('execd: --state must be one of scheduled, queued'),
    ]);
    // A key the server does not take is its 400: refused, one line.
    const [listed, upper] = await Promise.all([runCli(['jobs', '--json', '-l', `run=${run}`], env), runCli(['jobs', '-l', 'Team=web'], env)]);
    expect(JSON.parse(text(listed.stdout)).items).toEqual([]);
    expect(upper.code).toBe(65);
    expect(text(upper.stderr)).toMatch(/^execd: VALIDATION_FAILED: .*label.*\n$/);
  });
});
