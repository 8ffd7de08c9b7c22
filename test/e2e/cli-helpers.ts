import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { ROOT } from '../helpers/server.js';

/** What a finished `execd` child did: its exit code and every byte it wrote. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

export interface CliProcess {
  child: ChildProcess;
  stdout: Buffer[];
  stderr: Buffer[];
  done: Promise<CliResult>;
  /** Resolves once stdout (all of it so far) matches. */
  waitForStdout(pred: (text: string) => boolean, timeoutMs?: number): Promise<void>;
}

/**
 * The `execd` bin as a user runs it (node bin/execd.js), with nothing of ours in its environment but PATH,
 * HOME and what the test gives. EXECD_CLI_FROM_SOURCE: the sources, never a stale dist/ of the shared tree.
 */
export function startCli(args: string[], env: Record<string, string>, stdin?: Buffer | 'pipe'): CliProcess {
  const child = spawn(process.execPath, ['bin/execd.js', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', EXECD_CLI_FROM_SOURCE: '1', ...env },
    stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (Buffer.isBuffer(stdin)) child.stdin!.end(stdin);
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const watchers: (() => void)[] = [];
  child.stdout!.on('data', (d: Buffer) => (stdout.push(d), watchers.forEach((w) => w())));
  child.stderr!.on('data', (d: Buffer) => stderr.push(d));
  const done = new Promise<CliResult>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) })),
  );
  const waitForStdout = (pred: (text: string) => boolean, timeoutMs = 15_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => pred(Buffer.concat(stdout).toString()) && (clearTimeout(timer), resolve());
      const timer = setTimeout(
        () => reject(new Error(`stdout never matched: ${JSON.stringify(Buffer.concat(stdout).toString())}; stderr: ${Buffer.concat(stderr)}`)),
        timeoutMs,
      );
      watchers.push(check);
      void done.then(() => setTimeout(() => reject(new Error(`execd exited; stderr: ${Buffer.concat(stderr)}`)), 20));
      check();
    });
  return { child, stdout, stderr, done, waitForStdout };
}

export const runCli = (args: string[], env: Record<string, string>, stdin?: Buffer): Promise<CliResult> => startCli(args, env, stdin).done;

/** A TCP proxy in front of a server, whose open connections a test can cut (a network drop, as the client sees it). */
export interface DropProxy {
  url: string;
  /** Connections accepted so far. */
  accepted(): number;
  /** Destroy every open connection, both ways. */
  drop(): void;
  close(): Promise<void>;
}

export async function dropProxy(target: string): Promise<DropProxy> {
  const { hostname, port } = new URL(target);
  const open = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((down) => {
    accepted++;
    const up = connect(Number(port), hostname);
    for (const s of [down, up]) {
      open.add(s);
      s.on('error', () => {});
      s.on('close', () => (open.delete(s), down.destroy(), up.destroy()));
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    accepted: () => accepted,
    drop: () => open.forEach((s) => s.destroy()),
    close: () => {
      open.forEach((s) => s.destroy());
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
