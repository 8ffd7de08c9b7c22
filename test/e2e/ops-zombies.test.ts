import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/proc.js';
import { ROOT, startServer, tempInstanceDir, type ServerProcess } from '../helpers/server.js';

/**
 * The Docker image runs execd under tini as PID 1 so that orphaned
 * grandchildren are reaped. Without Docker, the same situation: a new PID
 * namespace (`unshare --pid --fork --mount-proc`) whose PID 1 is Debian's
 * tini, running the built server (`node dist/main.js`, as the image does).
 * 200 jobs each leave a background grandchild (`sleep 0.2 & echo x`): its
 * parent, the job's shell, exits at once, so it is re-parented to PID 1.
 * With tini: no zombie is left. The control, Node itself as PID 1: they pile up.
 */

const JOBS = 200;

function findTini(): string | null {
  const found = spawnSync('sh', ['-c', 'command -v tini'], { encoding: 'utf8' }).stdout.trim();
  return found || null;
}

/** tini, installed with apt-get when missing (as .ci/run does); null with the reason when it cannot be had. */
function ensureTini(): { tini: string | null; why: string } {
  let tini = findTini();
  if (!tini && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    spawnSync('sh', ['-c', 'apt-get install -y tini || (apt-get update && apt-get install -y tini)'], { stdio: 'ignore', timeout: 180_000 });
    tini = findTini();
  }
  return { tini, why: tini ? '' : 'tini is not installed and could not be installed with apt-get' };
}

function canUnshare(): { ok: boolean; why: string } {
  const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return { ok: false, why: `unshare is not available (${r.error.message})` };
  return r.status === 0 ? { ok: true, why: '' } : { ok: false, why: `unshare --pid --fork --mount-proc is not permitted here: ${r.stderr.trim()}` };
}

const { tini, why: noTini } = ensureTini();
const unshare = canUnshare();
const skipWhy = !unshare.ok ? unshare.why : noTini;
if (skipWhy) console.warn(`ops-zombies: skipped: ${skipWhy}`);

interface Proc {
  pid: number;
  ppid: number;
  state: string;
  name: string;
}

function processes(): Map<number, Proc> {
  const out = new Map<number, Proc>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(entry), { pid: Number(entry), ppid: Number(f[1]), state: f[0]!, name });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Every process below `root` (seen from the host's /proc), the namespace's PID 1 and the server included. */
function descendants(root: number): Proc[] {
  const all = [...processes().values()];
  const found: Proc[] = [];
  let frontier = [root];
  while (frontier.length > 0) {
    const next = all.filter((p) => frontier.includes(p.ppid));
    found.push(...next);
    frontier = next.map((p) => p.pid);
  }
  return found;
}

const zombiesUnder = (root: number) => descendants(root).filter((p) => p.state === 'Z');

let server: ServerProcess | undefined;
let init: number | undefined;
afterEach(async () => {
  // The namespace's PID 1 (a child of the unshare this test started): killing it ends the whole namespace.
  if (init !== undefined && processes().has(init)) process.kill(init, 'SIGKILL');
  if (server) await server.exited;
  server = undefined;
  init = undefined;
});

/** Start the built server as PID 1's child (or as PID 1) of a new PID namespace; returns the unshare pid. */
async function startInNamespace(pid1: string[]): Promise<{ s: ServerProcess; unsharePid: number; initPid: number }> {
  const s = await startServer(
    { EXECD_QUEUES: 'default:8', EXECD_INSTANCE_DIR: tempInstanceDir() },
    ['unshare', '--pid', '--fork', '--mount-proc', ...pid1, process.execPath, 'dist/main.js'],
  );
  server = s;
  const unsharePid = s.child.pid!;
  const initPid = [...processes().values()].find((p) => p.ppid === unsharePid)!.pid;
  init = initPid;
  return { s, unsharePid, initPid };
}

/** Submit the jobs and wait until every one has ended. */
async function runGrandchildJobs(s: ServerProcess): Promise<void> {
  const ids: string[] = [];
  for (let i = 0; i < JOBS; i++) {
    const res = await s.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'sleep 0.2 & echo x' }) });
    expect(res.status).toBe(202);
    ids.push(((await res.json()) as { id: string }).id);
  }
  for (const id of ids) {
    const job = (await (await s.api(`/v1/jobs/${id}?waitMs=20000`)).json()) as { state: string; outputBytes: { stdout: number } };
    expect(job.state).toBe('succeeded');
    expect(job.outputBytes.stdout).toBe(2);
  }
}

describe.skipIf(Boolean(skipWhy))('zombies in a PID namespace (the Docker image runs tini as PID 1)', () => {
  beforeAll(() => {
    // The image runs the compiled server: build it as the Dockerfile does.
    execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore', timeout: 180_000 });
  }, 200_000);

  it(`tini as PID 1: 0 zombies after ${JOBS} jobs that each leave a background grandchild`, async () => {
    const { s, initPid } = await startInNamespace([tini!, '--']);
    expect(processes().get(initPid)!.name).toBe('tini');
    await runGrandchildJobs(s);
    // The grandchildren have ended (SIGTERM to the job's group as its shell exits, or their 0.2 s), and were reaped.
    expect(await waitFor(() => descendants(initPid).every((p) => p.name !== 'sleep') && zombiesUnder(initPid).length === 0, 5000, 100)).toBe(true);
    expect(zombiesUnder(initPid)).toEqual([]);
    // And a clean stop: SIGTERM to PID 1, which tini passes to execd.
    process.kill(initPid, 'SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
  }, 120_000);

  it('control: with Node itself as PID 1 the orphans stay zombies (what tini is for)', async () => {
    const { s, initPid } = await startInNamespace([]);
    // A Node process's name is its main thread's: `node` up to Node 22, `MainThread` from Node 24 on.
    expect(['node', 'MainThread']).toContain(processes().get(initPid)!.name);
    await runGrandchildJobs(s);
    await waitFor(() => zombiesUnder(initPid).length >= JOBS / 2, 5000, 100);
    expect(zombiesUnder(initPid).length).toBeGreaterThanOrEqual(JOBS / 2);
  }, 120_000);
});
