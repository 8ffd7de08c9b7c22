import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';
import { problem } from '../errors.js';
import { sendProblem } from './errors.js';
import { CODE_DIR, PACKAGE_ROOT } from '../paths.js';

/**
 * The dashboard's policy. Scripts come only from execd itself (no inline script, no eval), requests only go to
 * execd (`connect-src 'self'` covers its WebSockets), and no other site may frame it. `style-src` allows inline
 * styles because xterm.js's DOM renderer writes its theme and cell colors as a <style> element it creates;
 * styles cannot run code, and the page never puts job data into markup (docs/ui.md, "Security").
 */
export const UI_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * Where `npm run build` put the dashboard (scripts/build-ui.mjs): dist/ui when execd runs from dist/, and the
 * same dist/ui when it runs from src/ (tsx, the tests). Null when it was never built.
 */
export function uiRoot(): string | null {
  for (const url of [new URL('ui/', CODE_DIR), new URL('dist/ui/', PACKAGE_ROOT)]) {
    const dir = fileURLToPath(url);
    if (existsSync(`${dir}index.html`)) return dir;
  }
  return null;
}

/** The static dashboard at /ui/ (docs/ui.md), with its own security headers; it calls /v1 like any client. */
export async function registerUi(app: FastifyInstance, root: string | null = uiRoot()): Promise<void> {
  app.get('/ui', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/ui/', 302));
  await app.register(async (ui) => {
    ui.addHook('onSend', (_request, reply, payload, done) => {
      reply.header('content-security-policy', UI_CSP);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('x-frame-options', 'DENY');
      reply.header('referrer-policy', 'no-referrer');
      reply.header('cross-origin-opener-policy', 'same-origin');
      // index.html must be checked each time (a new build names new assets); the assets may be cached briefly.
      reply.header('cache-control', 'no-cache');
      done(null, payload);
    });
    if (root === null) {
      const notBuilt = problem('NOT_FOUND', 'the dashboard is not built: run `npm run build` (it builds ui/ into dist/ui)');
      ui.get('/ui/', { schema: { hide: true } }, async (_request, reply) => sendProblem(reply, notBuilt));
      ui.get('/ui/*', { schema: { hide: true } }, async (_request, reply) => sendProblem(reply, notBuilt));
      return;
    }
    await ui.register(fastifyStatic, {
      root,
      prefix: '/ui/',
      decorateReply: false,
      index: ['index.html'],
      dotfiles: 'deny',
      preCompressed: true,
      etag: true,
      lastModified: false,
      schemaHide: true,
    });
  });
}
