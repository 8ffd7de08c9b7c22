import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, SERVER_TOKEN, startServer, stopServer, tempInstanceDir, type ServerProcess } from '../helpers/server.js';

/**
 * The README's quick tour, pasted into bash top to bottom (issue 15): its ```bash blocks run against a
 * real execd on a random port, with `set -eu` (a failing command or an unset variable such as a
 * never-set $ID stops it) and curl wrapped to report each request's HTTP status on stderr.
 * wscat comes from node_modules/.bin (a devDependency), as `npm install -g wscat` would give it.
 */
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The fenced blocks of one section (from its `## ` heading to the next), with their info strings. */
export function sectionBlocks(markdown: string, heading: string): { lang: string; code: string }[] {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`README has no section "## ${heading}"`);
  const next = markdown.indexOf('\n## ', start + 4);
  const section = markdown.slice(start, next < 0 ? undefined : next);
  return [...section.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1]!, code: m[2]! }));
}

interface Request {
  status: number;
  method: string;
  url: string;
}

/** Run a script with bash: its output, exit code, and the HTTP requests curl made. Killed (its whole group) after `timeoutMs`. */
interface BashRun {
  code: number | null;
  stdout: string;
  stderr: string;
  requests: Request[];
}

function runBash(script: string, env: Record<string, string>, timeoutMs: number): Promise<BashRun> {
  const dir = mkdtempSync(join(tmpdir(), 'execd-readme-'));
  const file = join(dir, 'tour.bash');
  // Each request's status goes to stderr; a -w of the tour's own comes later and wins (that request is then not listed).
  const preamble = [
    'set -eu',
    `curl() { command curl -w '%{stderr}HTTP %{http_code} %{method} %{url_effective}\\n' "$@"; }`,
    '',
  ].join('\n');
  writeFileSync(file, preamble + script);
  return new Promise((resolve, reject) => {
    // stdin stays open, as a terminal's would (wscat quits when its stdin ends); a group of its own, to kill it whole.
    const child = spawn('bash', [file], { cwd: dir, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      child.stdin.destroy();
      rmSync(dir, { recursive: true, force: true });
      const requests = [...stderr.matchAll(/^HTTP (\d{3}) (\S+) (\S+)$/gm)].map((m) => ({ status: Number(m[1]), method: m[2]!, url: m[3]! }));
      resolve({ code, stdout, stderr, requests });
    });
  });
}

describe('README quick tour', () => {
  let server: ServerProcess | undefined;
  beforeAll(async () => {
    server = await startServer({ EXECD_INSTANCE_DIR: tempInstanceDir(), EXECD_QUEUES: 'default:2' });
  });
  afterAll(() => stopServer(server));

  it('is one or more ```bash blocks (no bash-only syntax in a block marked sh)', () => {
    const blocks = sectionBlocks(README, 'Quick tour with curl');
    expect(blocks.length).toBeGreaterThan(0);
    for (const b of blocks) expect(b.lang).toBe('bash');
  });

  it('runs pasted into bash top to bottom: every step succeeds, every request answers as the comments say', async () => {
    const script = sectionBlocks(README, 'Quick tour with curl').map((b) => b.code).join('\n');
    const env = {
      PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env.PATH}`,
      HOME: process.env.HOME ?? '/root',
      LANG: 'C.UTF-8',
      EXECD: server!.url,
      TOKEN: SERVER_TOKEN,
    };
    const { code, stdout, stderr, requests } = await runBash(script, env, 90_000);
    const context = `exit ${code}\n--- stderr\n${stderr.slice(-1500)}\n--- stdout\n${stdout.slice(-1500)}`;
    expect(code, context).toBe(0);
    expect(requests.length, context).toBeGreaterThanOrEqual(20);
    // Every request reached this server and succeeded, but the one that shows check's 422.
    for (const r of requests) {
      expect(r.url.startsWith(server!.url), r.url).toBe(true);
      const expected = r.url.endsWith('/v1/run') && r.status === 422 ? 422 : r.status;
      expect([200, 202, 204, 422]).toContain(expected);
      if (r.status === 422) expect(r.url).toBe(`${server!.url}/v1/run`);
    }
    expect(requests.filter((r) => r.status === 422)).toHaveLength(1);
    expect(requests.filter((r) => r.status >= 400 && r.status !== 422), context).toEqual([]);
    // What the comments promise.
    expect(stdout).toContain('"code":"COMMAND_FAILED"');
    expect(stdout).toMatch(/^step 3\n\{"execd":"status","state":"succeeded","exitCode":0/m); // the follow, then its status line
    expect(stdout).toContain('{"type":"exit","state":"succeeded"'); // wscat saw the job end
    expect(stdout).toContain('"state":"canceled"');
    expect(stdout).toMatch(/^204$/m);
    expect(stdout).toContain(`"pid":${server!.child.pid}`); // /v1/info is this server
    expect(stdout).toMatch(/"items":\[\{"pid":1,/); // the host's processes, not only execd's
    expect(requests.some((r) => r.method === 'POST' && /\/v1\/jobs\/[^/]+\/signal$/.test(r.url) && r.status === 202)).toBe(true);
  }, 120_000);
});

describe('README quick tour with the execd command', () => {
  let server: ServerProcess | undefined;
  const bin = mkdtempSync(join(tmpdir(), 'execd-readme-bin-'));
  beforeAll(async () => {
    server = await startServer({ EXECD_INSTANCE_DIR: tempInstanceDir(), EXECD_QUEUES: 'default:2' });
    // `execd` on PATH as `npm link` would put it: the repository's bin, from the sources (never a stale dist/).
    writeFileSync(join(bin, 'execd'), `#!/bin/sh\nEXECD_CLI_FROM_SOURCE=1 exec node ${JSON.stringify(join(ROOT, 'bin/execd.js'))} "$@"\n`);
    chmodSync(join(bin, 'execd'), 0o755);
  });
  afterAll(async () => {
    await stopServer(server);
    rmSync(bin, { recursive: true, force: true });
  });

  it('runs pasted into bash top to bottom: each step succeeds and says what its comment says', async () => {
    const script = sectionBlocks(README, 'Quick tour with the `execd` command').map((b) => b.code).join('\n');
    const env = {
      PATH: `${bin}:${process.env.PATH}`,
      HOME: process.env.HOME ?? '/root',
      LANG: 'C.UTF-8',
      EXECD_URL: server!.url,
      EXECD_TOKEN: SERVER_TOKEN,
    };
    const { code, stdout, stderr } = await runBash(script, env, 90_000);
    const context = `exit ${code}\n--- stderr\n${stderr.slice(-1500)}\n--- stdout\n${stdout.slice(-1500)}`;
    expect(code, context).toBe(0);
    expect(stdout, context).toContain(String(server!.child.pid)); // execd info is this server
    expect(stdout).toMatch(/^\s+2 b$/m); // sort | uniq -c of the piped stdin
    expect(stdout).toMatch(/^out\nexit status 3$/m); // the command's status as execd's own
    expect(stderr).toMatch(/^err$/m); // and its stderr on stderr
    expect(stdout).toMatch(/^step 1\nstep 2\nstep 3$/m); // tail: every line, once
    expect(stdout).toMatch(/canceled/);
    expect(stdout).toMatch(/^building\nexit status 4$/m);
  }, 120_000);
});
