import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_TOKEN, startServer, stopServer, tempInstanceDir, type ServerProcess } from './helpers/server.js';

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
});
