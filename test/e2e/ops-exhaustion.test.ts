import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startError } from '../../src/queue/outcome.js';
import { ResourceExhaustedError, startRunRetrying } from '../../src/runner/index.js';
import { nativeUnavailableReason } from '../../src/runner/native-helper.js';
import { childProcessSpawner } from '../../src/runner/spawn.js';
import { waitFor } from '../helpers/proc.js';
import { procState, SERVER_TOKEN, startServer, stopServer, type ServerProcess } from '../helpers/server.js';

/**
 * Issue 14, items 1 and 2: at the descriptor limit execd answers a retryable 503 RESOURCE_EXHAUSTED
 * (never a 500, a 422 for a valid command, or a crash), recovers its descriptors after the storm,
 * and a run answered "not started" never ran, even when its spawn helper is SIGKILLed; no zombies.
 * Storm figures go to the test log (console.info) for the record.
 */
const SPAWNERS = (['native', 'child_process'] as const).filter((s) => s === 'child_process' || nativeUnavailableReason() === null);
const LIMIT = 256;
const NODE = [process.execPath, '--import', 'tsx', 'src/main.ts'];
const limited = (n: number) => ['prlimit', `--nofile=${n}:${n}`, ...NODE];

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** The descriptor count once it holds still (a connection just answered is closed a moment later). */
async function steadyFds(pid: number): Promise<number> {
  let last = openFds(pid);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = openFds(pid);
    if (now === last) return now;
    last = now;
  }
  return last;
}

/** The server's children (all threads' lists), with their state letter and name. */
function childrenOf(pid: number): Array<{ pid: number; state: string | null; comm: string }> {
  const out: Array<{ pid: number; state: string | null; comm: string }> = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let list: string;
    try {
      list = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of list.trim().split(/\s+/).filter(Boolean).map(Number)) {
      let comm = '';
      try {
        comm = readFileSync(`/proc/${c}/comm`, 'utf8').trim();
      } catch {
        // gone already: no name
      }
      out.push({ pid: c, state: procState(c), comm });
    }
  }
  return out;
}
const zombiesOf = (pid: number) => childrenOf(pid).filter((c) => c.state === 'Z');
const helpersOf = (pid: number) => childrenOf(pid).filter((c) => c.comm === 'execd-spawn-hel' && c.state !== 'Z');

interface Answer {
  status: number;
  code?: string;
  retryAfter?: string;
  error?: string;
  detail?: string;
  /** A run's returncode (200 answers). */
  returncode?: number;
}

/** POST /v1/run through an http.Agent (bounded sockets, keep-alive), never throwing: a reset is an answer too. */
function postRun(url: string, agent: Agent, body: unknown): Promise<Answer> {
  const data = JSON.stringify(body);
  return new Promise((resolve) => {
    const req = request(`${url}/v1/run`, { method: 'POST', agent, headers: { authorization: `Bearer ${SERVER_TOKEN}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => resolve({ status: -1, error: err.message }));
      res.on('end', () => {
        let code: string | undefined;
        let detail: string | undefined;
        let returncode: number | undefined;
        try {
          type Body = { code?: string; detail?: string; errno?: string; returncode?: number };
          const body = JSON.parse(Buffer.concat(chunks).toString()) as Body;
          code = body.code;
          returncode = body.returncode;
          if (code) detail = `${body.errno ?? ''} ${body.detail ?? ''}`;
        } catch {
          // not a problem body: the status says it all
        }
        resolve({ status: res.statusCode!, code, detail, returncode, retryAfter: res.headers['retry-after'] as string | undefined });
      });
    });
    req.on('error', (err) => resolve({ status: -1, error: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.end(data);
  });
}

const tally = (answers: Answer[]) =>
  answers.reduce<Record<string, number>>((t, a) => {
    const k = a.status === -1 ? `error ${a.error}` : `${a.status}${a.code ? ` ${a.code}` : ''}`;
    t[k] = (t[k] ?? 0) + 1;
    return t;
  }, {});

/** Run until one run answers 200 (the reserve is taken back on a timer after a storm). */
async function settled(url: string): Promise<Answer> {
  const agent = new Agent({ keepAlive: false });
  let last: Answer = { status: 0 };
  for (let i = 0; i < 50; i++) {
    last = await postRun(url, agent, { argv: ['true'] });
    if (last.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  agent.destroy();
  return last;
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'execd-exhaustion-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.each(SPAWNERS)('resource exhaustion (%s spawner, issue 14)', (spawner) => {
  let server: ServerProcess | undefined;
  const sockets: Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
    stopServer(server);
    server = undefined;
  });

  it(`with 3 descriptors free under a limit of ${LIMIT}, POST /v1/run answers 503 RESOURCE_EXHAUSTED with Retry-After, and the server lives on`, async () => {
    server = await startServer({ EXECD_SPAWNER: spawner }, limited(LIMIT));
    const pid = server.child.pid!;
    expect(await settled(server.url)).toMatchObject({ status: 200 }); // warm: helpers started, reserve taken
    const { port } = new URL(server.url);
    // Idle connections until only 3 descriptors are left (the server holds one per connection). Counted when steady:
    // a /proc read of the server's own (its load-shedding sampler's, each second) holds a descriptor for an instant.
    const target = LIMIT - 3;
    while ((await steadyFds(pid)) < target) {
      const missing = target - openFds(pid);
      for (let i = 0; i < missing; i++) {
        const s = connect(Number(port), '127.0.0.1');
        s.on('error', () => {});
        sockets.push(s);
      }
      await waitFor(() => openFds(pid) >= target, 2000);
    }
    expect(await steadyFds(pid)).toBe(target);
    const agent = new Agent({ keepAlive: false });
    const answer = await postRun(server.url, agent, { argv: ['true'] });
    agent.destroy();
    expect(answer).toMatchObject({ status: 503, code: 'RESOURCE_EXHAUSTED' });
    expect(Number(answer.retryAfter)).toBeGreaterThan(0);
    // Still up, and once the idle connections go, runs work again.
    for (const s of sockets.splice(0)) s.destroy();
    expect(await settled(server.url)).toMatchObject({ status: 200 });
    expect(server.child.exitCode).toBeNull();
    expect(zombiesOf(pid)).toEqual([]);
  });

  it(`300 concurrent runs under a limit of ${LIMIT}: every answer 200 or 503, nothing answered 503 ran, no zombie, descriptors back to baseline`, async () => {
    server = await startServer({ EXECD_SPAWNER: spawner, EXECD_MAX_SYNC_RUNS: '1000' }, limited(LIMIT));
    const pid = server.child.pid!;
    expect(await settled(server.url)).toMatchObject({ status: 200 });
    await waitFor(() => zombiesOf(pid).length === 0, 2000);
    const baseline = await steadyFds(pid);
    const helpersBefore = helpersOf(pid).length;
    const dir = mkdtempSync(join(work, `storm-${spawner}-`));
    const agent = new Agent({ keepAlive: true, maxSockets: 100 });
    const answers = await Promise.all(
      Array.from({ length: 300 }, (_, i) => postRun(server!.url, agent, { argv: ['/bin/sh', '-c', `touch ${dir}/${i}; sleep 1`], timeoutMs: 20_000 })),
    );
    agent.destroy();
    const byStatus = tally(answers);
    // Nothing answered "not started" ran; everything answered 200 did.
    const phantoms = answers.filter((a, i) => a.status !== 200 && existsSync(join(dir, String(i)))).length;
    const missing = answers.filter((a, i) => a.status === 200 && !existsSync(join(dir, String(i)))).length;
    expect(server.child.exitCode).toBeNull();
    // Still up a moment later, whatever ran meanwhile (a timer that met EMFILE would have taken it down).
    await new Promise((r) => setTimeout(r, 300));
    const errors = () => JSON.stringify(server!.logs.filter((l) => (l.level ?? 0) >= 50).slice(-3));
    expect(server.child.exitCode, `the server exited: ${errors()}`).toBeNull();
    const afterRun = await settled(server.url); // every run succeeds again (the reserve is taken back)
    const zombieFree = await waitFor(() => zombiesOf(pid).length === 0, 3000);
    // Back to the baseline: no descriptor leaked (a helper lost in the storm is restarted on demand: 3 fewer each).
    const back = await waitFor(() => openFds(pid) <= baseline, 5000);
    const after = await steadyFds(pid);
    console.info(`storm (${spawner}, nofile ${LIMIT}, 300 runs over 100 connections): ${JSON.stringify(byStatus)}; descriptors before ${baseline}, after ${after}; helpers ${helpersBefore} -> ${helpersOf(pid).length}; zombies ${zombiesOf(pid).length}; phantoms ${phantoms}`);
    // A connection that reaches the server only after the storm took every descriptor is closed at accept (libuv
    // accepts it on its reserve descriptor and closes it: ECONNRESET), which happens when the 100 sockets connect
    // slowly (a loaded machine); its request was never read, and the phantom check below holds it to that.
    const reset = (a: Answer) => a.status === -1 && a.error === 'ECONNRESET';
    expect(byStatus['200'] ?? 0).toBeGreaterThan(0);
    for (const a of answers) {
      if (reset(a)) continue;
      expect(a.status === 200 || (a.status === 503 && (a.code === 'RESOURCE_EXHAUSTED' || a.code === 'QUEUE_FULL')), JSON.stringify(a)).toBe(true);
      if (a.status === 503) expect(Number(a.retryAfter)).toBeGreaterThan(0);
    }
    expect(phantoms).toBe(0);
    expect(missing).toBe(0);
    expect(zombieFree).toBe(true);
    expect(back, `descriptors ${after}, baseline ${baseline}`).toBe(true);
    expect(afterRun).toMatchObject({ status: 200 });
  });
});

describe.skipIf(nativeUnavailableReason() !== null)('spawn helpers SIGKILLed during back-to-back runs (issue 14)', () => {
  let server: ServerProcess | undefined;
  afterEach(() => {
    stopServer(server);
    server = undefined;
  });

  it('no phantom (a run answered not-started never ran), no zombie; the helpers are replaced', async () => {
    server = await startServer({ EXECD_SPAWNER: 'native' });
    const pid = server.child.pid!;
    const dir = mkdtempSync(join(work, 'helpers-'));
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const answers: Answer[] = [];
    let kills = 0;
    let next = 0;
    // At least 400 runs, and on until the killer has struck 8 times (a fast spawner runs 400 in under 800 ms).
    const more = () => next < 400 || (kills < 8 && next < 20_000);
    const worker = async () => {
      while (more()) {
        const i = next++;
        answers[i] = await postRun(server!.url, agent, { argv: ['/bin/sh', '-c', `touch ${dir}/${i}`] });
      }
    };
    const killer = (async () => {
      while (more() && kills < 8) {
        await new Promise((r) => setTimeout(r, 100));
        const helpers = helpersOf(pid);
        if (helpers.length === 0) continue;
        // A helper of the server this test started; by name, as `pkill execd-spawn-hel` would, so a child
        // not exec'd yet (it still bears the helper's name) is hit too: it never ran, and is retried.
        process.kill(helpers[kills % helpers.length]!.pid, 'SIGKILL');
        kills++;
      }
    })();
    await Promise.all([worker(), worker(), worker(), worker(), killer]);
    agent.destroy();
    const phantoms = answers.filter((a, i) => a.status !== 200 && existsSync(join(dir, String(i)))).length;
    // A process the killer hit just after its exec (/proc read before, kill after) ran and was killed: 200 with
    // returncode -9, a true answer, and its file may be missing. Every run answered as exited 0 did its touch.
    const killedAfterExec = answers.filter((a) => a.status === 200 && a.returncode === -9).length;
    const missing = answers.filter((a, i) => a.status === 200 && a.returncode !== -9 && !existsSync(join(dir, String(i)))).length;
    expect(killedAfterExec).toBeLessThanOrEqual(kills);
    const zombieFree = await waitFor(() => zombiesOf(pid).length === 0, 3000);
    console.info(`helper kills: ${kills} SIGKILLs in ${answers.length} runs: ${JSON.stringify(tally(answers))} ${JSON.stringify(answers.filter((a) => a.status !== 200))}; killed after exec ${killedAfterExec}; phantoms ${phantoms}; zombies ${zombiesOf(pid).length}; helpers now ${helpersOf(pid).length}`);
    expect(kills).toBe(8);
    expect(phantoms).toBe(0);
    expect(missing).toBe(0);
    expect(zombieFree).toBe(true);
    for (const a of answers) expect(a.status === 200 || (a.status === 503 && a.code === 'RESOURCE_EXHAUSTED'), JSON.stringify(a)).toBe(true);
    expect(server.child.exitCode).toBeNull();
  });
});

describe('a job whose start meets exhaustion (issue 14)', () => {
  const spec = { argv: ['true'], envMode: 'add' as const, mergeStderr: false, killGraceMs: 100, maxOutputBytes: 1024 };
  const sink = { write: () => {} };
  /** A spawner that fails with `code` `failures` times, then spawns for real. */
  const failing = (failures: number, code = 'EMFILE') => {
    let calls = 0;
    return {
      calls: () => calls,
      spawner: {
        name: 'failing',
        spawn: (o: Parameters<typeof childProcessSpawner.spawn>[0]) => (++calls <= failures ? Promise.reject(Object.assign(new Error(`spawn ${code}`), { code })) : childProcessSpawner.spawn(o)),
      },
    };
  };
  const ctx = (spawner: { name: string; spawn: typeof childProcessSpawner.spawn }) => ({ spawner, pipeDrainMs: 100, childPath: '/usr/bin:/bin' });

  it('is tried again while the server is out of resources, and starts once it has them', async () => {
    const f = failing(2);
    const handle = await startRunRetrying(spec, sink, ctx(f.spawner), () => false);
    expect((await handle.done).exitCode).toBe(0);
    expect(f.calls()).toBe(3);
  });

  it('fails with RESOURCE_EXHAUSTED (errno, nothing ran) after 2.5 s of tries, or at once when canceled', async () => {
    const f = failing(100, 'EAGAIN');
    const err = await startRunRetrying(spec, sink, ctx(f.spawner), () => false).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResourceExhaustedError);
    expect(startError(err)).toMatchObject({ code: 'RESOURCE_EXHAUSTED', errno: 'EAGAIN' });
    expect(f.calls()).toBe(6);
    const g = failing(100, 'EAGAIN');
    await expect(startRunRetrying(spec, sink, ctx(g.spawner), () => true)).rejects.toBeInstanceOf(ResourceExhaustedError);
    expect(g.calls()).toBe(1);
    // A command that cannot start is no exhaustion: SPAWN_FAILED at once, no retry.
    const h = failing(100, 'ENOENT');
    expect(startError(await startRunRetrying(spec, sink, ctx(h.spawner), () => false).catch((e: unknown) => e))).toMatchObject({ code: 'SPAWN_FAILED', errno: 'ENOENT' });
    expect(h.calls()).toBe(1);
  }, 10_000);
});
