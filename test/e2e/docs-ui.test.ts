import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, SERVER_TOKEN, startServer, stopServer, tempInstanceDir, type ServerProcess } from '../helpers/server.js';

/**
 * /docs "Try it out" in a real browser (issue 15): Debian's Chromium, headless, against execd on a random
 * port, so the document's server URL and the page's CSP are tested where they used to fail. Without
 * chromium the test skips (apt-get install chromium); in CI a missing chromium is a failure.
 */
const CHROMIUM = process.env.EXECD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const present = existsSync(CHROMIUM);
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

if (!present && process.env.CI) {
  it('chromium is installed (CI)', () => {
    throw new Error(`${CHROMIUM} is missing: CI installs it (.ci/run: apt-get install -y chromium)`);
  });
}

describe.skipIf(!present)(`/docs "Try it out" in headless Chromium${present ? '' : ` (skipped: no ${CHROMIUM}; apt-get install chromium)`}`, () => {
  let server: ServerProcess | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  const profile = mkdtempSync(join(tmpdir(), 'execd-chromium-'));

  beforeAll(async () => {
    server = await startServer({ EXECD_INSTANCE_DIR: tempInstanceDir() });
    // A fresh profile each run (launchPersistentContext is Playwright's way to give --user-data-dir).
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60_000 });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(20_000);
    await page.goto(`${server.url}/docs/`);
    // Authorize once with the bearer token; Swagger UI sends it with every call.
    await page.locator('.auth-wrapper .authorize').click();
    await page.locator('.modal-ux input[type="text"]').fill(SERVER_TOKEN);
    await page.locator('.modal-ux .auth-btn-wrapper .authorize').click();
    await page.locator('.modal-ux .auth-btn-wrapper .btn-done').click();
  }, 90_000);

  afterAll(async () => {
    await context?.close();
    stopServer(server);
    rmSync(profile, { recursive: true, force: true });
  });

  /** Open an operation, press Try it out then Execute, and read the status the page shows. */
  async function tryIt(operationId: string): Promise<{ status: string; body: string }> {
    const op = page.locator(`.opblock[id^="operations-"][id$="-${operationId}"]`).first();
    await op.locator('.opblock-summary').first().click();
    await op.locator('.try-out__btn').click();
    await op.locator('.execute').click();
    const row = op.locator('.live-responses-table .response').first();
    await row.waitFor();
    return { status: (await row.locator('.response-col_status').innerText()).trim(), body: await row.locator('.response-col_description').innerText() };
  }

  it('GET /v1/info: 200 with the server process', async () => {
    const { status, body } = await tryIt('getInfo');
    expect(status, body).toBe('200');
    expect(body).toContain(`"pid": ${server!.child.pid}`);
  });

  it('POST /v1/run with the example body: 200 with the run result', async () => {
    const { status, body } = await tryIt('run');
    expect(status, body).toBe('200');
    expect(body).toContain('"exitCode": 0');
  });

  // docs/websocket.md's browser snippet, run in execd's own page (same origin: no EXECD_WS_ORIGINS needed).
  const snippet = /## From a browser[\s\S]*?```js\n([\s\S]*?)```/.exec(readFileSync(join(ROOT, 'docs/websocket.md'), 'utf8'))![1]!;
  const runSnippet = (token: string, id: string) =>
    page.evaluate(
      ([code, token, id]) =>
        new Promise<{ end: Record<string, unknown>; text: string; attempts: number }>((resolve) => {
          const Native = window.WebSocket;
          let attempts = 0;
          // Count the connection attempts: a refused token must not be retried.
          (window as unknown as { WebSocket: unknown }).WebSocket = class extends Native {
            constructor(url: string | URL, protocols?: string | string[]) {
              attempts++;
              super(url, protocols);
            }
          };
          let text = '';
          const tail = new Function(`${code}; return tail;`)();
          tail(location.origin, token, id, (_stream: string, data: string) => (text += data), (end: Record<string, unknown>) => {
            window.WebSocket = Native;
            resolve({ end, text, attempts });
          });
        }),
      [snippet, token, id] as const,
    );

  it("the browser snippet of docs/websocket.md tails a job from execd's own page", async () => {
    const job = (await (await server!.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'echo one; sleep 0.2; echo two' }) })).json()) as { id: string };
    const { end, text, attempts } = await runSnippet(SERVER_TOKEN, job.id);
    expect(end).toMatchObject({ type: 'exit', state: 'succeeded', returncode: 0 });
    expect(text).toBe('one\ntwo\n');
    expect(attempts).toBe(1);
  });

  it('the snippet stops at once on a refused token (401) and an unknown job (404), without retrying', async () => {
    const job = (await (await server!.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ argv: ['true'] }) })).json()) as { id: string };
    const refused = await runSnippet('not-the-token-0123456789', job.id);
    expect(refused.end).toEqual({ type: 'refused', status: 401 });
    expect(refused.attempts).toBe(1);
    const unknown = await runSnippet(SERVER_TOKEN, '00000000-0000-4000-8000-000000000000');
    expect(unknown.end).toEqual({ type: 'refused', status: 404 });
    expect(unknown.attempts).toBe(1);
  });
});
