import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, TOKEN, type TestApp } from '../helpers/app.js';
import { ROOT } from '../helpers/server.js';
import { buildUiOnce } from '../helpers/ui.js';

/**
 * The dashboard (/ui/, issue 18) in a real browser: Debian's Chromium, headless, driven by playwright-core,
 * against execd on a random port (on the Redis backend an API node whose jobs run on a worker node, as every
 * test app there). Without chromium the tests skip; in CI a missing chromium is a failure. Screenshots of each
 * page go to test-artifacts/ui/.
 */
const CHROMIUM = process.env.EXECD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const present = existsSync(CHROMIUM);
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const READ_TOKEN = 'ui-read-only-token-0123456789';
const ARTIFACTS = join(ROOT, 'test-artifacts/ui');

if (!present && process.env.CI) {
  it('chromium is installed (CI)', () => {
    throw new Error(`${CHROMIUM} is missing: CI installs it (.ci/run: apt-get install -y chromium)`);
  });
}

describe.skipIf(!present)(`the dashboard in headless Chromium${present ? '' : ` (skipped: no ${CHROMIUM})`}`, () => {
  let server: TestApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const dialogs: string[] = [];
  const pageErrors: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'execd-ui-test-'));
  const tokensFile = join(dir, 'tokens.json');
  const writeTokens = (scopes: string[]) =>
    writeFileSync(tokensFile, JSON.stringify([{ id: 'viewer', token: READ_TOKEN, scopes }]), { mode: 0o600 });

  type Call = { method?: string; body?: unknown; token?: string };
  const api = async <T = any>(path: string, init: Call = {}): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${server.url}${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${init.token ?? TOKEN}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    return { status: res.status, body: (res.status === 204 ? null : await res.json()) as T };
  };
  const submit = async (spec: Record<string, unknown>): Promise<string> => {
    const { status, body } = await api<{ id: string }>('/v1/jobs', { method: 'POST', body: spec });
    expect(status).toBe(202);
    return body.id;
  };
  const shot = async (p: Page, name: string) => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
  };
  const terminalText = (p: Page) => p.evaluate(() => (window as any).execdTail.text() as string);
  /** The tail got its exit frame and the terminal has drawn everything before it. */
  const ended = async (p: Page, timeout = 15_000) => {
    await expect.poll(() => p.locator('#tail-status').textContent(), { timeout }).toBe('ended');
    await expect.poll(() => p.evaluate(() => (window as any).execdTail.backlog() as number)).toBe(0);
  };
  /** A new tab of its own (its own sessionStorage), signed in with `token`. */
  const signedIn = async (ctx: BrowserContext, token: string): Promise<Page> => {
    const p = await ctx.newPage();
    p.setDefaultTimeout(15_000);
    p.on('dialog', (d) => (dialogs.push(d.message()), void d.dismiss()));
    p.on('pageerror', (e) => pageErrors.push(e.message));
    await p.goto(`${server.url}/ui/`);
    await p.locator('#token').fill(token);
    await p.locator('#login button[type=submit]').click();
    await p.locator('header.top .who').waitFor();
    return p;
  };

  beforeAll(async () => {
    await buildUiOnce();
    // The viewer starts with jobs:write, so that it owns a job (a token without admin sees its own jobs only); it loses it below.
    writeTokens(['info', 'jobs:read', 'jobs:write']);
    server = await startApp({ EXECD_TOKENS_FILE: tokensFile, EXECD_QUEUES: 'default:4' });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60_000 });
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await signedIn(context, TOKEN);
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
    // Nothing a test page did may have opened a dialog or thrown.
    expect(dialogs).toEqual([]);
    expect(pageErrors).toEqual([]);
  });

  it('serves /ui/ with a strict CSP, nosniff and no framing; a wrong token is refused at the login', async () => {
    const res = await fetch(`${server.url}/ui/`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("'unsafe-eval'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const p = await context.newPage();
    await p.goto(`${server.url}/ui/`);
    await p.locator('#token').fill('not-the-token-0123456789');
    await p.locator('#login button[type=submit]').click();
    await expect.poll(() => p.locator('#login .error').textContent()).toContain('not valid');
    expect(await p.evaluate(() => sessionStorage.length)).toBe(0);
    await p.close();
  });

  it('signs in: the overview shows the queues and the server, and the token stays in sessionStorage only', async () => {
    await page.locator('#queues tr[data-queue="default"]').waitFor();
    await expect.poll(() => page.locator('#server-info').textContent()).toContain(server.config.queueBackend);
    expect(await page.evaluate(() => [sessionStorage.getItem('execd.token'), localStorage.length, document.cookie])).toEqual([TOKEN, 0, '']);
    expect(page.url()).not.toContain(TOKEN);
    // Live from /v1/events: a job queued now shows in the counts without a reload.
    const before = Number(await page.locator('#queues tr[data-queue="default"] .processed').textContent());
    await submit({ argv: ['true'] });
    await expect.poll(async () => Number(await page.locator('#queues tr[data-queue="default"] .processed').textContent())).toBeGreaterThan(before);
    await shot(page, 'overview');
  });

  it('a job printing a line every 100 ms: lines show while it runs, in colour, and the jobs list has it', async () => {
    const id = await submit({ command: 'for i in $(seq 1 25); do printf "\\033[1;32mline %d\\033[0m\\n" $i; sleep 0.1; done' });
    await page.goto(`${server.url}/ui/#/jobs/${id}`);
    await expect.poll(() => terminalText(page), { timeout: 10_000 }).toContain('line 3');
    const { body: job } = await api(`/v1/jobs/${id}`);
    expect(job.state).toBe('running'); // seen before the end
    expect(await page.evaluate(() => (window as any).execdTail.encoding())).toBe('binary'); // raw bytes, no base64
    await ended(page);
    await expect.poll(() => page.locator('#exit-status').textContent()).toContain('returncode0');
    await shot(page, 'job');
    await page.goto(`${server.url}/ui/#/jobs`);
    await page.locator(`#jobs tr[data-job="${id}"]`).waitFor();
    expect(await page.locator('#jobs tbody tr').first().getAttribute('data-job')).toBe(id); // newest first
    // Live: a job submitted now appears at the top without a reload, and its row changes state.
    const next = await submit({ argv: ['sleep', '0.3'] });
    await expect.poll(() => page.locator('#jobs tbody tr').first().getAttribute('data-job')).toBe(next);
    await expect.poll(() => page.locator(`#jobs tr[data-job="${next}"] .state`).textContent(), { timeout: 10_000 }).toBe('succeeded');
    await shot(page, 'jobs');
  });

  it('offline mid-job and back: the tail resumes from its offsets, every line exactly once', async () => {
    const id = await submit({ command: 'for i in $(seq 1 40); do echo "row $i"; echo "err $i" >&2; sleep 0.1; done' });
    await page.goto(`${server.url}/ui/#/jobs/${id}`);
    await expect.poll(() => terminalText(page), { timeout: 10_000 }).toContain('row 5');
    await context.setOffline(true);
    await expect.poll(() => page.locator('#tail-status').textContent()).toBe('reconnecting');
    await page.waitForTimeout(800); // lines are written meanwhile
    await context.setOffline(false);
    await ended(page);
    const lines = (await terminalText(page)).split('\n');
    const rows = lines.filter((l) => l.startsWith('row '));
    const errs = lines.filter((l) => l.startsWith('err '));
    expect(rows).toEqual(Array.from({ length: 40 }, (_, i) => `row ${i + 1}`));
    expect(errs).toEqual(Array.from({ length: 40 }, (_, i) => `err ${i + 1}`));
    // stdout alone, from what the view kept.
    await page.locator('#view').selectOption('stdout');
    await expect.poll(async () => (await terminalText(page)).includes('err ')).toBe(false);
    expect((await terminalText(page)).split('\n').filter((l) => l.startsWith('row '))).toHaveLength(40);
  });

  it('the stdin box writes to a job created with streamed stdin, and closes it', async () => {
    const id = await submit({ argv: ['cat'], stdin: { stream: true } });
    await page.goto(`${server.url}/ui/#/jobs/${id}`);
    await page.locator('#stdin').fill('héllo from the browser\n');
    await page.getByRole('button', { name: 'Send and close stdin' }).click();
    await ended(page);
    expect(await terminalText(page)).toBe('héllo from the browser');
    expect((await api(`/v1/jobs/${id}`)).body.state).toBe('succeeded');
  });

  it('a gap frame is drawn as a marker line and listed; binary frames on either side are placed by their offsets', async () => {
    const id = await submit({ argv: ['true'] });
    const p = await signedIn(context, TOKEN);
    try {
      // The server's side of this one stream is played by the test: a gap needs a viewer too slow for lag=skip.
      const frame = (tag: number, offset: number, text: string) => {
        const body = Buffer.from(text);
        const buf = Buffer.alloc(9 + body.length);
        buf[0] = tag;
        buf.writeBigUInt64BE(BigInt(offset), 1);
        body.copy(buf, 9);
        return buf;
      };
      await p.routeWebSocket(new RegExp(`/v1/jobs/${id}/stream\\?`), (ws) => {
        ws.send(JSON.stringify({ type: 'state', state: 'running', pid: 1, startedAt: null, finishedAt: null, error: null }));
        ws.send(frame(1, 0, 'before the gap\n'));
        ws.send(frame(2, 0, 'on stderr\n'));
        ws.send(JSON.stringify({ type: 'gap', stream: 'stdout', from: 15, to: 1015 }));
        ws.send(frame(1, 1015, 'after the gap\n'));
        ws.send(JSON.stringify({ type: 'exit', state: 'succeeded', exitCode: 0, signal: null, returncode: 0, timedOut: false }));
        ws.close({ code: 1000 });
      });
      await p.goto(`${server.url}/ui/#/jobs/${id}`);
      await ended(p);
      expect(await terminalText(p)).toBe(
        'before the gap\non stderr\n\n 1000 bytes of stdout (15-1015) are gone for this view; Download has them \nafter the gap',
      );
      expect(await p.locator('#gaps li').allTextContents()).toEqual(['1000 bytes of stdout (15-1015) are gone for this view; Download has them']);
    } finally {
      await p.close();
    }
  });

  it('cancels a running job from its page', async () => {
    const id = await submit({ argv: ['sleep', '30'] });
    await page.goto(`${server.url}/ui/#/jobs/${id}`);
    await expect.poll(async () => (await api(`/v1/jobs/${id}`)).body.state).toBe('running');
    await page.locator('#cancel').click();
    await expect.poll(async () => (await api(`/v1/jobs/${id}`)).body.state, { timeout: 10_000 }).toBe('canceled');
    await ended(page);
    await expect(page.locator('#cancel').count()).resolves.toBe(0);
    // The label filter shows what the API's does.
    const web = await submit({ argv: ['true'], labels: { team: 'web' } });
    await submit({ argv: ['true'], labels: { team: 'db' } });
    const { body: byLabel } = await api<{ items: { id: string }[] }>('/v1/jobs?label=team%3Dweb');
    await page.goto(`${server.url}/ui/#/jobs?label=team%3Dweb`);
    await page.locator(`#jobs tr[data-job="${web}"]`).waitFor();
    expect(await page.locator('#jobs tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-job')))).toEqual(
      byLabel.items.map((j) => j.id).reverse(),
    );
    // The state filter: only canceled jobs, this one among them.
    await page.goto(`${server.url}/ui/#/jobs`);
    await page.locator('#filter-state').selectOption('canceled');
    await page.locator(`#jobs tr[data-job="${id}"]`).waitFor();
    expect(new Set(await page.locator('#jobs tbody .state').allTextContents())).toEqual(new Set(['canceled']));
  });

  it('a job printing HTML, script and terminal escapes (title, OSC 52 clipboard, OSC 8 link) runs nothing and changes nothing', async () => {
    const corpus = [
      '<script>window.__pwned=1</script>',
      '<img src=x onerror="window.__pwned=2">',
      '"><svg onload=window.__pwned=3>',
      '\x1b]0;PWNED-TITLE\x07',
      '\x1b]2;PWNED-TITLE\x1b\\',
      '\x1b]52;c;cHduZWQ=\x07',
      '\x1b]8;;javascript:window.__pwned=4\x07click\x1b]8;;\x07',
      '\x1b[5i\x1b[4i\x1bP+q544e\x1b\\',
      'end-of-corpus',
    ].join('\n');
    // In argv and in an env name too (names may hold anything but "="): the spec shows them as text.
    const id = await submit({ argv: ['printf', '%s\\n', corpus, '<img src=y onerror=window.__pwned=5>'], env: { '<script>alert(1)</script>': 'v' } });
    const title = await page.title();
    await page.goto(`${server.url}/ui/#/jobs/${id}`);
    await expect.poll(() => terminalText(page), { timeout: 10_000 }).toContain('end-of-corpus');
    await ended(page);
    const text = await terminalText(page);
    expect(text).toContain('<script>window.__pwned=1</script>');
    expect(text).toContain('<img src=x onerror="window.__pwned=2">');
    expect(await page.locator('#spec').textContent()).toContain('<img src=y onerror=window.__pwned=5>');
    expect(await page.locator('#spec').textContent()).toContain('<script>alert(1)</script>');
    await page.locator('#terminal').click(); // a click where the OSC 8 link was: nothing opens
    await page.goto(`${server.url}/ui/#/jobs`);
    await page.locator(`#jobs tr[data-job="${id}"]`).waitFor();
    const state = await page.evaluate(() => ({
      pwned: (window as any).__pwned ?? null,
      title: document.title,
      images: document.querySelectorAll('img, svg:not(.xterm svg)').length,
      scripts: Array.from(document.scripts).map((s) => new URL(s.src, location.href).pathname),
    }));
    expect(state).toEqual({ pwned: null, title, images: 0, scripts: ['/ui/app.js'] });
    expect(title).toBe('execd');
    expect(context.pages()).toHaveLength(1); // no window opened
    await shot(page, 'escapes');
  });

  it('a read-only token sees no cancel, signal or run; the API refuses it too', async () => {
    const { body: own } = await api<{ id: string }>('/v1/jobs', { method: 'POST', body: { argv: ['sleep', '20'] }, token: READ_TOKEN });
    const id = own.id;
    writeTokens(['info', 'jobs:read']); // the viewer is read-only from now on (as after a SIGHUP)
    server.app.security.reload();
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    try {
      const p = await signedIn(ctx, READ_TOKEN);
      expect(await p.locator('header.top nav a').allTextContents()).toEqual(['Overview', 'Jobs']);
      await p.goto(`${server.url}/ui/#/jobs/${id}`);
      await expect.poll(() => p.locator('.job-head h2 .state').textContent()).toBe('running');
      expect(await p.locator('#cancel, #send-signal, #stdin-box').count()).toBe(0);
      await shot(p, 'read-only');
      expect((await api(`/v1/jobs/${id}/cancel`, { method: 'POST', token: READ_TOKEN })).status).toBe(403);
    } finally {
      await api(`/v1/jobs/${id}/cancel`, { method: 'POST' });
      await ctx.close();
    }
  });

  it('run: the policy answers first, Run now shows the result, Submit opens the job; processes link execd\'s jobs', async () => {
    await page.goto(`${server.url}/ui/#/run`);
    await page.locator('#command-input').fill('echo "<b>hi</b>"; echo oops >&2; exit 3');
    await expect.poll(() => page.locator('#policy').textContent()).toContain('allowed');
    await page.locator('#run-now').click();
    await page.locator('#run-result').waitFor();
    const result = await page.locator('#run-result').textContent();
    expect(result).toContain('returncode 3');
    expect(result).toContain('<b>hi</b>');
    expect(result).toContain('oops');
    await shot(page, 'run');
    await page.locator('#command-input').fill('sleep 20');
    await expect.poll(() => page.locator('#policy').textContent()).toContain('allowed');
    await page.locator('#submit-job').click();
    await page.waitForURL(/#\/jobs\/[0-9a-f-]+$/);
    const id = decodeURIComponent(page.url().split('#/jobs/')[1]!);
    expect((await api(`/v1/jobs/${id}`)).body.spec.command).toBe('sleep 20');
    await expect.poll(async () => (await api(`/v1/jobs/${id}`)).body.state).toBe('running');
    await page.goto(`${server.url}/ui/#/processes`);
    await page.locator('#processes tbody tr').first().waitFor();
    // The API node marks the processes of the jobs it runs itself; on the Redis pair a worker node runs them.
    if (server.config.queueBackend === 'memory') await page.locator(`#processes a[href="#/jobs/${id}"]`).first().waitFor();
    await shot(page, 'processes');
    await api(`/v1/jobs/${id}/cancel`, { method: 'POST' });
  });

  it('1,000,000 lines: the page keeps answering input within 200 ms, its memory stays bounded, and the tail reaches the end', async () => {
    const id = await submit({ argv: ['seq', '1', '1000000'] });
    await page.goto(`${server.url}/ui/#/jobs/${id}`);
    // Input latency as the page lives it: from the key event's creation to its handler.
    await page.evaluate(() => {
      (window as any).__latency = [];
      document.getElementById('search')!.addEventListener('keydown', (e) => (window as any).__latency.push(performance.now() - e.timeStamp));
    });
    await page.locator('#search').focus();
    // From the first lines drawn (the page's own start is not the subject) until the last, and a few keys after.
    // A cheap probe (the last line): reading the whole buffer would itself hold the main thread.
    const lastLine = () => page.evaluate(() => (window as any).execdTail.lastLine() as string);
    await expect.poll(lastLine, { timeout: 10_000, interval: 20 }).not.toBe('');
    const started = Date.now();
    let typed = 0;
    let whileDrawing = 0;
    while (Date.now() - started < 15_000) {
      await page.keyboard.press('x');
      typed++;
      const done = await page.evaluate(() => (window as any).execdTail.lastLine() === '1000000' && (window as any).execdTail.backlog() === 0);
      if (!done) whileDrawing++;
      if (done && typed >= 10) break;
      await page.waitForTimeout(100);
    }
    expect(whileDrawing).toBeGreaterThanOrEqual(3); // the keys met the flood, not only its end
    const latency: number[] = await page.evaluate(() => (window as any).__latency);
    expect(latency.length).toBe(typed);
    expect(Math.max(...latency), `key latencies ${latency.map(Math.round).join(' ')}`).toBeLessThan(200);
    await expect.poll(() => terminalText(page), { timeout: 20_000 }).toMatch(/999999\n1000000$/);
    const heap = await page.evaluate(() => (performance as any).memory?.usedJSHeapSize ?? 0);
    expect(heap).toBeLessThan(200 * 1024 * 1024);
    expect(await page.locator('#search').inputValue()).toBe('x'.repeat(typed));
    await shot(page, 'million-lines');
  }, 45_000);
});
