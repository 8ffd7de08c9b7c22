import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { registerUi, UI_CSP } from '../../src/plugins/ui.js';
import { testConfig } from '../helpers/app.js';
import { buildUiOnce } from '../helpers/ui.js';

/** How execd serves the dashboard (src/plugins/ui.ts): the files, their headers, EXECD_UI=false, and a missing build. */
describe('/ui/', () => {
  beforeAll(() => buildUiOnce());

  it('serves index.html, app.js and app.css with the CSP, nosniff and no framing; /ui redirects to /ui/', async () => {
    const app = await buildApp(testConfig());
    try {
      const index = await app.inject({ url: '/ui/' });
      expect(index.statusCode).toBe(200);
      expect(index.headers['content-type']).toMatch(/^text\/html/);
      expect(index.headers['content-security-policy']).toBe(UI_CSP);
      expect(UI_CSP).toMatch(/script-src 'self';/);
      expect(UI_CSP).not.toMatch(/script-src[^;]*unsafe/);
      expect(UI_CSP).toMatch(/connect-src 'self'/);
      expect(UI_CSP).toMatch(/frame-ancestors 'none'/);
      expect(index.headers['x-content-type-options']).toBe('nosniff');
      expect(index.headers['x-frame-options']).toBe('DENY');
      expect(index.body).not.toMatch(/<script>|\son\w+=/); // no inline script or handler: the CSP would refuse it
      const js = await app.inject({ url: '/ui/app.js', headers: { 'accept-encoding': 'br' } });
      expect(js.statusCode).toBe(200);
      expect(js.headers['content-encoding']).toBe('br');
      expect(js.headers['content-type']).toMatch(/javascript/);
      expect((await app.inject({ url: '/ui/app.css' })).headers['content-type']).toMatch(/^text\/css/);
      const redirect = await app.inject({ url: '/ui' });
      expect([redirect.statusCode, redirect.headers.location]).toEqual([302, '/ui/']);
      const missing = await app.inject({ url: '/ui/nope.js' });
      expect(missing.statusCode).toBe(404);
      expect(missing.headers['content-type']).toMatch(/problem\+json/);
      expect((await app.inject({ url: '/ui/..%2fpackage.json' })).statusCode).toBeGreaterThanOrEqual(400);
    } finally {
      await app.close();
    }
  });

  it('EXECD_UI=false: no /ui/ at all; another value is a clear config error', async () => {
    const app = await buildApp(testConfig({ EXECD_UI: 'false' }));
    try {
      expect((await app.inject({ url: '/ui/' })).statusCode).toBe(404);
      expect((await app.inject({ url: '/ui/app.js' })).statusCode).toBe(404);
      // A browser at / goes to the API's docs instead of the dashboard, and the links say there is none.
      expect((await app.inject({ url: '/', headers: { accept: 'text/html' } })).headers.location).toBe('/docs');
      expect((await app.inject({ url: '/' })).json()).toMatchObject({ ui: null });
    } finally {
      await app.close();
    }
    expect(() => testConfig({ EXECD_UI: 'yes' })).toThrow(/EXECD_UI must be true or false/);
  });

  describe('without a build', () => {
    let empty: string;
    beforeAll(() => void (empty = mkdtempSync(join(tmpdir(), 'execd-ui-none-'))));
    afterAll(() => rmSync(empty, { recursive: true, force: true }));

    it('answers 404 problem+json saying to run npm run build', async () => {
      const app = Fastify();
      await registerUi(app, null);
      const res = await app.inject({ url: '/ui/' });
      expect(res.statusCode).toBe(404);
      expect(res.json().detail).toContain('npm run build');
      expect(res.headers['content-security-policy']).toBe(UI_CSP);
      await app.close();
    });
  });
});

describe('GET /v1/whoami', () => {
  it("answers any token with its id and scopes, never the token", async () => {
    const app = await buildApp(testConfig());
    try {
      const res = await app.inject({ url: '/v1/whoami', headers: { authorization: 'Bearer test-token-0123456789abcdef' } });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ id: 'env', scopes: ['info', 'processes', 'run', 'jobs:read', 'jobs:write', 'admin'] });
      expect(res.body).not.toContain('test-token');
      expect((await app.inject({ url: '/v1/whoami' })).statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });
});
