import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRun, type RunHandle } from '../../src/runner/index.js';
import { nativeSpawner } from '../../src/runner/native.js';
import { nativeUnavailableReason } from '../../src/runner/native-helper.js';
import { startApp, TOKEN, type TestApp } from '../helpers/app.js';
import { ROOT } from '../helpers/server.js';

/**
 * `execd exec` as a user runs it (node bin/execd.js, from the sources). With -it it is driven under a
 * real terminal: a pseudo-terminal of the native spawner's own, whose size the test changes as a
 * window would (the CLI gets SIGWINCH and sends a resize frame).
 */
const skipReason = process.env.EXECD_SPAWNER === 'child_process' ? 'EXECD_SPAWNER=child_process' : nativeUnavailableReason();
const NATIVE = skipReason === null;

let t: TestApp;
beforeAll(async () => {
  t = await startApp({ EXECD_QUEUES: 'default:4' });
});
afterAll(() => t.close());

const cliEnv = () => ({ PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', EXECD_CLI_FROM_SOURCE: '1', EXECD_URL: t.url, EXECD_TOKEN: TOKEN });

describe('execd exec without a terminal', () => {
  it('-i streams stdin to the command, its output comes back, and the CLI exits with its code', async () => {
    const child = spawn(process.execPath, ['bin/execd.js', 'exec', '-i', '--', 'sh', '-c', 'tr a-z A-Z; echo err >&2; exit 3'], {
      cwd: ROOT,
      env: cliEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.end('hello\n');
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const code = await new Promise((resolve) => child.once('close', resolve));
    expect(Buffer.concat(out).toString()).toBe('HELLO\n');
    expect(Buffer.concat(err).toString()).toBe('err\n');
    expect(code).toBe(3);
  });
});

describe.skipIf(!NATIVE)(`execd exec -it under a terminal${NATIVE ? '' : ` (skipped: ${skipReason}; a tty needs the native spawner)`}`, () => {
  it('runs bash on a remote terminal: typed commands, a resize, Ctrl-C, its exit code, the local terminal left as it was', async () => {
    let screen = '';
    const local: RunHandle = await startRun(
      {
        // stty -g before and after: the CLI put the terminal back as it found it (raw mode undone)
        command: 'stty -g; node bin/execd.js exec -it -- bash --norc --noprofile -i; echo "code=$?"; stty -g',
        env: cliEnv(),
        envMode: 'replace',
        cwd: ROOT,
        tty: { cols: 90, rows: 20 },
        stdin: 'stream',
        mergeStderr: true,
        killGraceMs: 500,
        maxOutputBytes: 1 << 20,
        timeoutMs: 60_000,
      },
      { write: (_stream, chunk) => void (screen += chunk.toString()) },
      { spawner: nativeSpawner, pipeDrainMs: 500, childPath: process.env.PATH! },
    );
    const shown = async (re: RegExp) => {
      for (let i = 0; i < 400 && !re.test(screen); i++) await new Promise((r) => setTimeout(r, 50));
      expect(screen, `waited for ${re}`).toMatch(re);
    };
    const type = (text: string) => local.writeStdin(Buffer.from(text));
    const prompt = /bash-[\d.]+[#$] $/;
    try {
      await shown(prompt);
      type('stty size; test -t 0 && echo "remote $TERM"\r');
      await shown(/20 90\r+\nremote xterm-256color\r/);
      local.resize({ cols: 132, rows: 40 }); // the window changes: SIGWINCH to the CLI, a resize frame to the server
      await new Promise((r) => setTimeout(r, 300));
      type('stty size\r');
      await shown(/40 132\r/);
      type('sleep 100\r');
      await new Promise((r) => setTimeout(r, 300));
      type('\u0003'); // Ctrl-C: the remote terminal interrupts sleep, bash prompts again
      await shown(/\^C[\s\S]*bash-[\d.]+[#$] $/);
      type('exit 7\r');
      const outcome = await local.done;
      expect(outcome.exitCode).toBe(0);
      expect(screen).toMatch(/code=7\r\n/);
      const settings = screen.split('\r\n').filter((line) => /^[0-9a-f]+(:[0-9a-f]+){10,}$/.test(line));
      expect(settings).toHaveLength(2);
      expect(settings[1]).toBe(settings[0]);
    } finally {
      local.terminate('cancel');
      await local.done;
    }
  });
});
