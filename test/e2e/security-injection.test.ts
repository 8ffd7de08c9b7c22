/**
 * An injection corpus (shell metacharacters, option injection, NUL, newlines,
 * unicode) in every argv, env, cwd and stdin slot of every way to run a
 * command: each answer is a 4xx, or the program receives the value byte for
 * byte (it echoes it back); and no marker file is ever created.
 */
import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { AUTH, testConfig } from '../helpers/app.js';
import { tempDir } from '../helpers/security.js';

const dir = tempDir('execd-inject-');
const work = join(dir, 'work');
const MARKER = join(dir, 'MARKER');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CORPUS = [
  `; touch ${MARKER}`,
  `$(touch ${MARKER})`,
  `\`touch ${MARKER}\``,
  `| touch ${MARKER}`,
  `&& touch ${MARKER}`,
  `|| touch ${MARKER} #`,
  `\ntouch ${MARKER}\n`,
  `\r\ntouch ${MARKER}`,
  `'; touch ${MARKER}; '`,
  `"; touch ${MARKER}; "`,
  `> ${MARKER}`,
  `>${MARKER}`,
  `< /etc/passwd`,
  `\${IFS}touch\${IFS}${MARKER}`,
  `--output=${MARKER}`,
  `-o${MARKER}`,
  '--help',
  '--version',
  '-',
  '--',
  '-e',
  '-n',
  '%s%s%s%n',
  '$PATH',
  '$HOME',
  '~',
  '*',
  '?',
  '[a-z]*',
  '!!',
  '\\',
  "'",
  '"',
  'a\u0000b',
  '\u0000',
  'line1\nline2',
  '\t',
  ' ',
  '',
  '\u202eevil.sh',
  '😀',
  'é',
  'e\u0301',
  '\uFEFF',
  '\u00a0',
  '\u2028',
  '日本語',
  'a'.repeat(10_000),
  '\ud800',
  '\udfff😀',
  '../../../../etc/passwd',
  '/etc/passwd',
  'file:///etc/passwd',
  '%00',
  '%2e%2e%2f',
  '() { :; }; touch ' + MARKER,
];

const bytes = (s: string) => Buffer.from(s, 'utf8');
const isWellFormed = (s: string) => !/\p{Cs}/u.test(s);

/** A safe directory name made from a corpus string, when one can be made. */
const dirFor = (s: string) => (s !== '' && s !== '.' && s !== '..' && !s.includes('/') && !s.includes('\0') && isWellFormed(s) && bytes(s).length < 200 ? s : null);

let app: FastifyInstance;
beforeAll(async () => {
  mkdirSync(work, { recursive: true });
  app = await buildApp(testConfig());
});
afterAll(async () => {
  await app.close();
  expect(existsSync(MARKER)).toBe(false);
  const made = readdirSync(work).filter((n) => !CORPUS.includes(n));
  expect(made).toEqual([]);
});

async function post(url: string, body: unknown) {
  const res = await app.inject({ method: 'POST', url, headers: { ...AUTH, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  return res;
}

/** A 4xx, or a 200 whose echoed bytes are exactly `want`. */
function expectEchoOr4xx(what: string, status: number, got: () => Buffer, want: Buffer): void {
  if (status >= 400 && status < 500) return;
  expect(status, what).toBe(200);
  expect(got().equals(want), `${what}: got ${JSON.stringify(got().toString('utf8').slice(0, 80))}`).toBe(true);
}

describe('an injection corpus in every slot', () => {
  it('POST /v1/run argv[1..]: printf %s echoes each value byte for byte, or 4xx', async () => {
    for (const x of CORPUS) {
      const res = await post('/v1/run', { argv: ['printf', '%s', x], encoding: 'base64', cwd: work });
      expectEchoOr4xx(`argv ${JSON.stringify(x).slice(0, 40)}`, res.statusCode, () => Buffer.from(res.json().stdout, 'base64'), bytes(x));
      if (!isWellFormed(x)) expect(res.statusCode).toBe(400);
      if (x.includes('\0')) expect(res.statusCode).toBe(422);
    }
  });

  it('POST /v1/run argv[0]: never runs as a program (4xx)', async () => {
    for (const x of CORPUS) {
      const res = await post('/v1/run', { argv: [x, 'arg'], cwd: work });
      expect(res.statusCode, JSON.stringify(x).slice(0, 40)).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
    }
  });

  it('POST /v1/run and stderr merge: an argument reaches the program unparsed by the merging shell', async () => {
    for (const x of CORPUS) {
      const res = await post('/v1/run', { argv: ['printf', '%s', x], stderr: 'merge', encoding: 'base64', cwd: work });
      expectEchoOr4xx(`merge ${JSON.stringify(x).slice(0, 40)}`, res.statusCode, () => Buffer.from(res.json().stdout, 'base64'), bytes(x));
    }
  });

  it('env values and keys reach the program byte for byte, or 4xx', async () => {
    for (const x of CORPUS) {
      const v = await post('/v1/run', { argv: ['printenv', 'INJECTED'], env: { INJECTED: x }, encoding: 'base64', cwd: work });
      expectEchoOr4xx(`env value ${JSON.stringify(x).slice(0, 40)}`, v.statusCode, () => Buffer.from(v.json().stdout, 'base64'), bytes(`${x}\n`));
      const k = await post('/v1/run', { argv: ['env'], env: { [x]: 'injected-value' }, encoding: 'base64', cwd: work });
      if (k.statusCode === 200) {
        expect(Buffer.from(k.json().stdout, 'base64').includes(bytes(`${x}=injected-value\n`)), `env key ${JSON.stringify(x).slice(0, 40)}`).toBe(true);
      } else {
        expect(k.statusCode).toBeGreaterThanOrEqual(400);
        expect(k.statusCode).toBeLessThan(500);
      }
    }
  });

  it('stdin reaches the program byte for byte', async () => {
    for (const x of CORPUS) {
      const res = await post('/v1/run', { argv: ['cat'], stdin: x, encoding: 'base64', cwd: work });
      expectEchoOr4xx(`stdin ${JSON.stringify(x).slice(0, 40)}`, res.statusCode, () => Buffer.from(res.json().stdout, 'base64'), bytes(x));
    }
  });

  it('cwd: a 4xx, or the program runs in exactly that directory', async () => {
    for (const x of CORPUS) {
      // the value as given: mostly no such directory (4xx); if it names one, the program runs there
      const raw = await post('/v1/run', { argv: ['pwd'], cwd: x, encoding: 'base64' });
      if (raw.statusCode === 200) expect(Buffer.from(raw.json().stdout, 'base64').toString()).toBe(`${realpathSync(resolve(x))}\n`);
      else expect(raw.statusCode).toBeLessThan(500);
      const name = dirFor(x);
      if (name === null) continue;
      const path = join(work, name);
      mkdirSync(path, { recursive: true });
      const res = await post('/v1/run', { argv: ['pwd'], cwd: path, encoding: 'base64' });
      expectEchoOr4xx(`cwd ${JSON.stringify(x).slice(0, 40)}`, res.statusCode, () => Buffer.from(res.json().stdout, 'base64'), bytes(`${path}\n`));
      expect(res.statusCode).toBe(200);
    }
  });

  it('the subprocess functions: args, env= and input slots', async () => {
    for (const x of CORPUS) {
      const out = await post('/v1/subprocess/check_output', { args: ['printf', '%s', x], cwd: work });
      expectEchoOr4xx(`check_output ${JSON.stringify(x).slice(0, 40)}`, out.statusCode, () => Buffer.from(out.json().output, 'base64'), bytes(x));
      const env = await post('/v1/subprocess/run', { args: ['printenv', 'INJECTED'], env: { INJECTED: x }, capture_output: true, cwd: work });
      expectEchoOr4xx(`run env= ${JSON.stringify(x).slice(0, 40)}`, env.statusCode, () => Buffer.from(env.json().stdout, 'base64'), bytes(`${x}\n`));
      if (isWellFormed(x)) {
        const input = await post('/v1/subprocess/check_output', { args: ['cat'], input: bytes(x).toString('base64'), cwd: work });
        expectEchoOr4xx(`input ${JSON.stringify(x).slice(0, 40)}`, input.statusCode, () => Buffer.from(input.json().output, 'base64'), bytes(x));
      }
      const call = await post('/v1/subprocess/call', { args: [x], cwd: work });
      expect(call.statusCode, `call ${JSON.stringify(x).slice(0, 40)}`).toBeGreaterThanOrEqual(400);
    }
  });

  it('jobs: argv reaches the program byte for byte, or 4xx', async () => {
    const ids: Array<[string, string]> = [];
    for (const x of CORPUS) {
      const res = await post('/v1/jobs', { argv: ['printf', '%s', x], cwd: work });
      if (res.statusCode >= 400) {
        expect(res.statusCode).toBeLessThan(500);
        continue;
      }
      ids.push([x, res.json().id]);
    }
    for (const [x, id] of ids) {
      const job = (await app.inject({ method: 'GET', url: `/v1/jobs/${id}?waitMs=10000`, headers: AUTH })).json();
      if (job.state === 'failed' && job.error) continue; // could not start (NUL): reported on the job, not run
      expect(job.state, JSON.stringify(x).slice(0, 40)).toBe('succeeded');
      const out = await app.inject({ method: 'GET', url: `/v1/jobs/${id}/output`, headers: AUTH });
      expect(out.rawPayload.equals(bytes(x)), `job ${JSON.stringify(x).slice(0, 40)}`).toBe(true);
    }
  });
});
