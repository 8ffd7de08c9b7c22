import { chmodSync, existsSync, mkdirSync, realpathSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { AUTH, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { tempDir } from '../helpers/security.js';
import { settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

/**
 * Check what runs, run what was checked (issue 13, item 2): the policy resolves argv[0] from
 * the cwd's realpath with the request's PATH, as the kernel will, and the runner is handed the
 * file it checked; a job whose checked file was replaced before it started fails instead of
 * running the replacement.
 */

const R = realpathSync(tempDir('execd-checked-'));
afterAll(() => rmSync(R, { recursive: true, force: true }));

/** A script that prints its name and leaves a marker file, so a test can tell it ran. */
function script(path: string, name: string): void {
  writeFileSync(path, `#!/bin/sh\necho ${name}\ntouch ${join(R, `ran-${name}`)}\n`);
  chmodSync(path, 0o755);
}
const ran = (name: string) => existsSync(join(R, `ran-${name}`));

const OK = join(R, 'a/ok');
const BLOCK = join(R, 'a/block');
const policyFile = join(R, 'policy.json');

beforeAll(() => {
  mkdirSync(join(R, 'a'));
  mkdirSync(join(R, 'b/sub'), { recursive: true });
  script(OK, 'a-ok');
  script(join(R, 'b/ok'), 'b-ok');
  // <R>/a/link/.. is <R>/b for the kernel, and <R>/a for path.resolve
  symlinkSync(join(R, 'b/sub'), join(R, 'a/link'));
  writeFileSync(BLOCK, '#!/bin/sh\nwhile [ ! -e "$1" ]; do sleep 0.02; done\n');
  chmodSync(BLOCK, 0o755);
  writeFileSync(
    policyFile,
    JSON.stringify({ rules: [{ name: 'only-a-ok', executables: [OK, BLOCK], cwd: [R], env: ['PATH'] }] }),
  );
});

const viaLink = `${R}/a/link/..`; // not join(): it would drop link/.. as path.resolve does
/** Requests that name <R>/b/ok through the symlink, each way a program is found. */
const bypasses: Array<{ argv: string[]; cwd: string; env?: Record<string, string> }> = [
  { argv: ['./ok'], cwd: viaLink },
  { argv: ['ok'], cwd: viaLink, env: { PATH: '.' } },
  { argv: ['link/../ok'], cwd: join(R, 'a') },
  { argv: ['ok'], cwd: join(R, 'a'), env: { PATH: 'link/..' } },
  { argv: [`${R}/a/link/../ok`], cwd: R },
];

describe('the symlinked-cwd bypass (argv[0] resolved against the cwd as given)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startJobsApp({ EXECD_POLICY_FILE: policyFile });
  });
  afterAll(() => t.close());

  it('/v1/run refuses <R>/b/ok reached through a symlinked cwd or path, and never runs it', async () => {
    for (const body of bypasses) {
      const res = await t.http.post('/v1/run').set(AUTH).send(body);
      expect(res.status, JSON.stringify(body)).toBe(403);
      expect(res.body).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule: 'only-a-ok' });
      expect(res.body.reasons.join('\n')).toMatch(/is not one the rule allows/);
    }
    expect(ran('b-ok')).toBe(false);
    // the allowed file still runs, by each of these ways
    for (const body of [
      { argv: ['./ok'], cwd: join(R, 'a') },
      { argv: ['ok'], cwd: join(R, 'a'), env: { PATH: '.' } },
      { argv: ['sub/../../a/ok'], cwd: join(R, 'b') },
    ]) {
      const res = await t.http.post('/v1/run').set(AUTH).send(body);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.stdout).toBe('a-ok\n');
    }
  });

  it('/v1/subprocess/* refuses it the same way', async () => {
    for (const { argv, cwd, env } of bypasses) {
      for (const fn of ['run', 'call', 'check_output']) {
        const body = { args: argv, cwd, ...(env ? { env } : {}) };
        const res = await t.http.post(`/v1/subprocess/${fn}`).set(AUTH).send(body);
        expect(res.status, `${fn} ${JSON.stringify(body)}`).toBe(403);
        expect(res.body).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule: 'only-a-ok' });
      }
    }
    expect(ran('b-ok')).toBe(false);
    const res = await t.http.post('/v1/subprocess/check_output').set(AUTH).send({ args: ['./ok'], cwd: join(R, 'a'), text: true });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });

  it('/v1/jobs refuses it at submission, and never queues it', async () => {
    for (const body of bypasses) {
      const res = await t.http.post('/v1/jobs').set(AUTH).send(body);
      expect(res.status, JSON.stringify(body)).toBe(403);
      expect(res.body).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule: 'only-a-ok' });
    }
    const ok = await submit(t, { argv: ['./ok'], cwd: join(R, 'a') });
    expect((await settle(t, ok.id)).state).toBe('succeeded');
    expect(ran('b-ok')).toBe(false);
  });

  it('POST /v1/policy/explain answers the same, and names the file and the realpath cwd it would run', async () => {
    for (const body of bypasses) {
      const res = await t.http.post('/v1/policy/explain').set(AUTH).send(body);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ allowed: false, rule: 'only-a-ok', effective: null });
      const run = await t.http.post('/v1/run').set(AUTH).send(body);
      expect(run.body.reasons).toEqual(res.body.reasons);
    }
    const res = await t.http.post('/v1/policy/explain').set(AUTH).send({ argv: ['./ok'], cwd: `${R}/b/sub/../../a` });
    expect(res.body).toMatchObject({ allowed: true, rule: 'only-a-ok', effective: { executable: OK, cwd: join(R, 'a') } });
  });
});

describe('a job runs the file the policy checked at submission, or fails', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startJobsApp({ EXECD_POLICY_FILE: policyFile, EXECD_QUEUES: 'default:1' });
  });
  afterAll(() => t.close());

  /** Submit `argv` behind a job that holds the only worker; `between` runs while it waits; then let it start. */
  async function queuedBehindBlocker(body: object, between: () => void): Promise<Job> {
    const gate = join(R, `gate-${Math.random().toString(36).slice(2)}`);
    const blocker = await submit(t, { argv: [BLOCK, gate], cwd: R });
    await waitRunning(t, blocker.id);
    const job = await submit(t, body);
    expect(job.state).toBe('queued');
    between();
    writeFileSync(gate, '');
    expect((await settle(t, blocker.id)).state).toBe('succeeded');
    return settle(t, job.id);
  }

  it('a file renamed over the checked path while the job waits: failed with a clear error, the replacement never runs', async () => {
    const evil = join(R, 'a/evil');
    script(evil, 'evil');
    const done = await queuedBehindBlocker({ argv: ['./ok'], cwd: join(R, 'a') }, () => renameSync(evil, OK));
    expect(done.state).toBe('failed');
    expect(done.error).toMatchObject({ code: 'SPAWN_FAILED', errno: 'ESTALE' });
    expect(done.error!.message).toMatch(/no longer the file the command policy checked/);
    expect(ran('evil')).toBe(false);
    expect(ran('b-ok')).toBe(false);
    script(OK, 'a-ok'); // a new file at the path: a job submitted now checks it, and runs it
    const again = await submit(t, { argv: ['./ok'], cwd: join(R, 'a') });
    expect(await settle(t, again.id)).toMatchObject({ state: 'succeeded' });
  });

  it('a checked file that is gone when the job starts: failed (ENOENT), even if the name would now resolve elsewhere', async () => {
    // PATH "a:b" finds a/ok at submission; with a/ok gone, a search at start would find b/ok
    const done = await queuedBehindBlocker({ argv: ['ok'], cwd: R, env: { PATH: 'a:b' } }, () => unlinkSync(OK));
    expect(done.state).toBe('failed');
    expect(done.error).toMatchObject({ code: 'SPAWN_FAILED', errno: 'ENOENT' });
    expect(done.error!.message).toMatch(/gone since the command policy checked it/);
    script(OK, 'a-ok');
  });

  it('a cwd symlink swapped while the job waits does not change the program (the path checked is physical)', async () => {
    const dir = join(R, 'swap');
    symlinkSync(join(R, 'a'), dir);
    const done = await queuedBehindBlocker({ argv: ['./ok'], cwd: dir }, () => {
      unlinkSync(dir);
      symlinkSync(join(R, 'b'), dir);
    });
    expect(done.state, JSON.stringify(done)).toBe('succeeded');
    expect(ran('b-ok')).toBe(false);
    await waitFor(() => ran('a-ok'), 1000);
  });
});
