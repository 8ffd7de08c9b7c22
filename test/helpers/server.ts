import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { membersOfGroup } from './proc.js';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const SERVER_TOKEN = 'ops-test-token-0123456789abcdef';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** Every JSON log line so far (stdout). */
  logs: LogLine[];
  stderr: string[];
  /** Resolves with the exit code and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The first log line (already logged or to come) that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** fetch against the server with the token. */
  api(path: string, init?: RequestInit): Promise<Response>;
}

/**
 * The environment of a test server: nothing of ours but PATH and HOME; a free port, the test token,
 * load shedding off (a busy CI machine lags the loop; a 503 would say nothing about the test's subject),
 * and CI's EXECD_SPAWNER (the suite runs once per spawner).
 */
function baseEnv(): Record<string, string> {
  return {
    PATH: process.env.PATH!,
    HOME: process.env.HOME ?? '/root',
    EXECD_PORT: '0',
    EXECD_TOKEN: SERVER_TOKEN,
    EXECD_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...(process.env.EXECD_SPAWNER ? { EXECD_SPAWNER: process.env.EXECD_SPAWNER } : {}),
  };
}

const tempDirs: string[] = [];

/**
 * A fresh instance directory of its own (mode 0700), so tests never meet each other's instance records. Removed when
 * the test process exits.
 */
export function tempInstanceDir(): string {
  if (tempDirs.length === 0) process.once('exit', () => tempDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const dir = mkdtempSync(join(tmpdir(), 'execd-ops-inst-'));
  tempDirs.push(dir);
  return dir;
}

/**
 * A fresh data directory of its own (mode 0700), removed when the test process exits: a server a test
 * SIGKILLs leaves its files there, not in the machine's temporary directory. Its instance records go in
 * its `instances` (EXECD_INSTANCE_DIR's default), unless the test gives EXECD_INSTANCE_DIR.
 */
export function tempDataDir(): string {
  if (tempDirs.length === 0) process.once('exit', () => tempDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const dir = mkdtempSync(join(tmpdir(), 'execd-ops-data-'));
  tempDirs.push(dir);
  return dir;
}

/** A test's environment, with a data directory of its own unless it names one (`EXECD_DATA_DIR: ''` asks for the default). */
const withDataDir = (env: Record<string, string>): Record<string, string> => ('EXECD_DATA_DIR' in env ? env : { EXECD_DATA_DIR: tempDataDir(), ...env });

/**
 * The stdio of every execd a test starts: its last slot is an IPC channel, which closes when the test
 * process dies however it dies (a SIGKILLed vitest worker too), and execd then shuts down (src/main.ts):
 * no server outlives its test. Wrappers (unshare, tini, script) pass the channel's fd on to the node they run.
 */
export const SERVER_STDIO = ['ignore', 'pipe', 'pipe', 'ipc'] as const;

/**
 * Start a real execd process (`node --import tsx src/main.ts` by default, as
 * `npm start`) with only the given environment, and wait for its first log
 * line, which names the URL.
 */
export async function startServer(env: Record<string, string>, command: string[] = [process.execPath, '--import', 'tsx', 'src/main.ts']): Promise<ServerProcess> {
  const child = spawn(command[0]!, command.slice(1), {
    cwd: ROOT,
    env: { ...baseEnv(), ...withDataDir(env) },
    stdio: [...SERVER_STDIO],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { level: 0, msg: text };
    }
    logs.push(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.pred(line)) waiters.splice(i, 1)[0]!.resolve(line);
    }
  });
  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> => {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such log line within ${timeoutMs} ms; stderr: ${stderr.join('')}`)), timeoutMs);
      waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      void exited.then(() => setTimeout(() => reject(new Error(`the server exited; stderr: ${stderr.join('')}`)), 50));
    });
  };
  const first = await waitForLog(() => true);
  const m = /^execd listening on (http:\/\/\S+)$/.exec(first.msg);
  if (!m) throw new Error(`first log line does not name the URL: ${JSON.stringify(first)}`);
  const url = m[1]!;
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${SERVER_TOKEN}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...(init.headers as Record<string, string>) } });
  return { child, url, logs, stderr, exited, waitForLog, api };
}

/** Kill a server this test started (its pid only), if it still runs. */
export function stopServer(s: ServerProcess | undefined): void {
  if (s && s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
}

/** The state letter of a process (R, S, Z…), or null when it is gone. */
export function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
  } catch {
    return null;
  }
}

/** Run execd until it exits by itself (a refused start): its exit code and stderr. */
export async function startExpectingRefusal(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { ...baseEnv(), ...withDataDir(env) },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  return { code, stderr };
}

/** Live (not zombie) members of a process group: a zombie is dead, only not yet reaped by whoever inherited it. */
export const liveMembers = (pgid: number): number[] =>
  membersOfGroup(pgid).filter((pid) => {
    const state = procState(pid);
    return state !== null && state !== 'Z';
  });
