import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeUnavailableReason } from '../../src/runner/native-helper.js';
import { startApp, TOKEN, type TestApp } from '../helpers/app.js';
import { ROOT } from '../helpers/server.js';
import { buildUiOnce } from '../helpers/ui.js';

/**
 * The dashboard's interactive terminal (issue 20, docs/ui.md) in headless Chromium: "New terminal" starts a
 * shell on a pseudo-terminal as a job, and its page is the terminal — typed into through xterm.js, fitted to
 * the window (resize frames), Ctrl-C reaching the foreground group, and `exit 3` ending the job with code 3.
 * A terminal needs the native spawner: with child_process (or no native helper) the tests skip, saying why.
 */
const CHROMIUM = process.env.EXECD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const ARTIFACTS = join(ROOT, 'test-artifacts/ui');
const nativeSkip = process.env.EXECD_SPAWNER === 'child_process' ? 'EXECD_SPAWNER=child_process' : nativeUnavailableReason();
const skipReason = !existsSync(CHROMIUM) ? `no ${CHROMIUM}` : nativeSkip !== null ? `${nativeSkip}; a terminal needs the native spawner` : null;

describe.skipIf(skipReason !== null)(`the dashboard's terminal in headless Chromium${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let server: TestApp;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const dialogs: string[] = [];

  const text = () => page.evaluate(() => (window as any).execdTail.text() as string);
  const size = () => page.evaluate(() => (window as any).execdTail.size() as { cols: number; rows: number });
  /** Type a line at the terminal (xterm's hidden textarea has the focus) and press Enter. */
  const line = async (s: string) => {
    await page.keyboard.type(s);
    await page.keyboard.press('Enter');
  };
  const shows = (re: RegExp, timeout = 5000) => expect.poll(text, { timeout }).toMatch(re);

  beforeAll(async () => {
    await buildUiOnce();
    server = await startApp();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60_000 });
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('dialog', (d) => (dialogs.push(d.message()), void d.dismiss()));
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${server.url}/ui/`);
    await page.locator('#token').fill(TOKEN);
    await page.locator('#login button[type=submit]').click();
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    expect(dialogs).toEqual([]);
    expect(pageErrors).toEqual([]);
  });

  it('"New terminal" runs a shell on a terminal: typed into, resized with the window, Ctrl-C, and exit 3 ends the job with 3', async () => {
    await page.locator('#new-terminal').click();
    await page.waitForURL(/#\/jobs\/[0-9a-f-]+$/);
    const id = decodeURIComponent(page.url().split('#/jobs/')[1]!);
    const job = await (await fetch(`${server.url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    expect(job.spec).toMatchObject({ argv: ['bash'], tty: { cols: expect.any(Number), rows: expect.any(Number) } });
    await expect.poll(() => page.locator('#spec-tty').textContent()).toMatch(/a terminal, \d+×\d+/);

    // Typed at the terminal; the shell's arithmetic proves it ran (the echoed line itself has no "hi-42").
    await expect.poll(() => page.locator('#tail-status').textContent()).toBe('live');
    await expect.poll(() => page.locator('#tty-size').textContent()).toMatch(/terminal \d+×\d+/);
    await shows(/[#$] ?$/m); // the prompt (bash's, as its rc files make it)
    await line('echo hi-$((6*7))');
    await shows(/^hi-42$/m);

    // The terminal has the size the fit gave it in this window, and follows the window (debounced resize frames).
    const before = await size();
    await line('echo "size=$(stty size)"');
    await shows(new RegExp(`^size=${before.rows} ${before.cols}$`, 'm'));
    await page.setViewportSize({ width: 900, height: 600 });
    await expect.poll(size).not.toEqual(before);
    const after = await size();
    expect(after.cols).toBeLessThan(before.cols);
    await expect.poll(() => page.locator('#tty-size').textContent()).toContain(`${after.cols}×${after.rows}`);
    await line('echo "resized=$(stty size)"');
    await shows(new RegExp(`^resized=${after.rows} ${after.cols}$`, 'm'));

    // Ctrl-C is the byte 0x03: the line discipline interrupts the foreground `sleep` (status 130), the shell goes on.
    const started = Date.now();
    await line('sleep 100');
    await shows(/^[^\n]*sleep 100\s*$/m);
    await page.waitForTimeout(300);
    await page.keyboard.press('Control+C');
    await line('echo "after=$?"');
    await shows(/^after=130$/m);
    expect(Date.now() - started).toBeLessThan(10_000);

    // Output is still drawn by xterm only, with the title and clipboard sequences swallowed, on an interactive terminal too.
    await line(`printf '\\e]0;PWNED-TITLE\\a\\e]52;c;cHduZWQ=\\a<img src=x onerror=window.__pwned=1>\\n'; echo "mark=$((2+3))"`);
    await shows(/^<img src=x onerror=window.__pwned=1>\r?\nmark=5$/m);
    expect(await page.evaluate(() => [(window as any).__pwned ?? null, document.title, document.querySelectorAll('img').length])).toEqual([null, 'execd', 0]);

    await page.screenshot({ path: join((mkdirSync(ARTIFACTS, { recursive: true }), ARTIFACTS), 'terminal.png') });
    if (process.env.EXECD_UI_SCREENSHOT) await page.screenshot({ path: process.env.EXECD_UI_SCREENSHOT });

    // `exit 3`: the job ends with the shell's code, and the terminal stops taking keys.
    await line('exit 3');
    await expect.poll(() => page.locator('#tail-status').textContent()).toBe('ended');
    await expect.poll(() => page.locator('#exit-status').textContent()).toContain('exitCode3');
    const done = await (await fetch(`${server.url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    expect(done).toMatchObject({ state: 'failed', result: { exitCode: 3, returncode: 3 } });
  }, 30_000);

  it('the Run form runs a command on a terminal when "on a terminal (tty)" is ticked', async () => {
    await page.goto(`${server.url}/ui/#/run`);
    await page.locator('#command-input').fill('test -t 1 && echo "on-a-tty $(stty size)"');
    await page.locator('#tty-input').check();
    await expect.poll(() => page.locator('#policy').textContent()).toContain('allowed');
    await page.locator('#run-now').click();
    await expect.poll(() => page.locator('#run-result').textContent()).toContain('on-a-tty 24 80');
  });
});

describe.skipIf(!existsSync(CHROMIUM))(`"New terminal" is not offered where it cannot work${existsSync(CHROMIUM) ? '' : ` (skipped: no ${CHROMIUM})`}`, () => {
  const READ_TOKEN = 'ui-terminal-read-only-0123456789';
  const dir = mkdtempSync(join(tmpdir(), 'execd-ui-terminal-'));
  let browser: Browser;
  const servers: TestApp[] = [];

  /** The header of a fresh tab signed in to `server` with `token`, once the button's checks have answered. */
  const header = async (server: TestApp, token: string, settled: string) => {
    const p = await browser.newPage();
    await p.goto(`${server.url}/ui/`);
    await p.locator('#token').fill(token);
    await p.locator('#login button[type=submit]').click();
    await p.locator('header.top .who').waitFor();
    if (settled) await p.locator(settled).waitFor();
    return p;
  };

  beforeAll(async () => {
    await buildUiOnce();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60_000 });
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    for (const s of servers) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('not with the child_process spawner (it says why), nor to a token without jobs:write', async () => {
    const tokens = join(dir, 'tokens.json');
    writeFileSync(tokens, JSON.stringify([{ id: 'viewer', token: READ_TOKEN, scopes: ['info', 'jobs:read'] }]), { mode: 0o600 });
    const server = await startApp({ EXECD_SPAWNER: 'child_process', EXECD_TOKENS_FILE: tokens });
    servers.push(server);
    const p = await header(server, TOKEN, '#no-terminal');
    expect(await p.locator('#new-terminal').count()).toBe(0);
    expect(await p.locator('#no-terminal').getAttribute('title')).toContain('child_process');
    // Asked for anyway (the Run form's tty box), the server says why not: 422 SPAWN_FAILED.
    await p.goto(`${server.url}/ui/#/run`);
    await p.locator('#command-input').fill('tty');
    await p.locator('#tty-input').check();
    await expect.poll(() => p.locator('#policy').textContent()).toContain('allowed');
    await p.locator('#run-now').click();
    await expect.poll(() => p.locator('.run .error').textContent()).toMatch(/422 SPAWN_FAILED: .*needs the native spawner/);
    const viewer = await header(server, READ_TOKEN, '');
    await viewer.locator('#queues').waitFor(); // the overview has loaded: the header is as it stays
    expect(await viewer.locator('#new-terminal, #no-terminal').count()).toBe(0);
  });

  it('not where the policy allows no shell on a terminal (it says why, or why not on this spawner)', async () => {
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ rules: [{ name: 'shells-without-terminal', executables: ['bash', 'sh'] }] }));
    const server = await startApp({ EXECD_POLICY_FILE: file });
    servers.push(server);
    const p = await header(server, TOKEN, '#no-terminal');
    expect(await p.locator('#new-terminal').count()).toBe(0);
    expect(await p.locator('#no-terminal').getAttribute('title')).toMatch(nativeSkip === null ? /the policy allows no shell/ : /child_process/);
  });
});
