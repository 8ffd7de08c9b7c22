import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { build, type Plugin } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * scripts/bundle-server.mjs's plugins, on bundles of their own: what is left out of the bundle still works when it
 * is used (loaded then, from the package that requires it), and is not in the bundle's source.
 */
const ROOT = join(import.meta.dirname, '../..');
const { PLUGINS } = (await import(join(ROOT, 'scripts/bundle-server.mjs'))) as { PLUGINS: Plugin[] };
// Inside the package, so that the bundle finds node_modules as dist/ does.
const CACHE = join(ROOT, 'node_modules/.cache');
mkdirSync(CACHE, { recursive: true });
const dir = mkdtempSync(join(CACHE, 'execd-bundle-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function bundleAndRun(name: string, source: string): Promise<{ out: string; code: string }> {
  writeFileSync(join(dir, `${name}.ts`), source);
  const result = await build({
    entryPoints: [join(dir, `${name}.ts`)],
    outfile: join(dir, `${name}.mjs`),
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    banner: { js: "import { createRequire as __execdRequire } from 'node:module'; const require = __execdRequire(import.meta.url);" },
    plugins: PLUGINS,
    write: true,
    metafile: true,
    logLevel: 'error',
  });
  const inputs = Object.keys(result.metafile.inputs).join('\n');
  const run = spawnSync(process.execPath, [join(dir, `${name}.mjs`)], { encoding: 'utf8', timeout: 60_000 });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  return { out: run.stdout, code: inputs };
}

describe('the server bundle (scripts/bundle-server.mjs)', () => {
  it('a package left out is called through its stand-in (fastify inject: light-my-request), and not bundled', async () => {
    const { out, code } = await bundleAndRun(
      'inject',
      `import fastify from 'fastify';
const app = fastify();
app.get('/', async () => ({ ok: 1 }));
const r = await app.inject('/');
console.log(r.statusCode, r.body);`,
    );
    expect(out.trim()).toBe('200 {"ok":1}');
    expect(code).not.toMatch(/node_modules\/light-my-request\//);
    expect(code).not.toMatch(/node_modules\/ajv\//);
    expect(code).toMatch(/node_modules\/fastify\/fastify\.js/);
  }, 60_000);

  it('a stand-in is constructed as the class it stands for (@fastify/websocket injectWS: new Duplexify)', async () => {
    const { out, code } = await bundleAndRun(
      'ws',
      `import fastify from 'fastify';
import websocket from '@fastify/websocket';
const app = fastify();
await app.register(websocket);
app.register(async (a) => a.get('/ws', { websocket: true }, (socket) => socket.on('message', (m) => socket.send('echo ' + m))));
await app.ready();
const ws = await app.injectWS('/ws');
ws.send('hi');
ws.once('message', (m) => { console.log(String(m)); ws.terminate(); app.close(); });`,
    );
    expect(out.trim()).toBe('echo hi');
    expect(code).not.toMatch(/node_modules\/duplexify\//);
  }, 60_000);

  it("a function taken from a stand-in as the package is required is one that loads it (@fastify/static's glob)", async () => {
    writeFileSync(join(dir, 'hello.txt'), 'hello\n');
    const { out, code } = await bundleAndRun(
      'static',
      `import fastify from 'fastify';
import fastifyStatic from '@fastify/static';
const app = fastify();
const globLoaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/glob/'));
const before = globLoaded();
await app.register(fastifyStatic, { root: ${JSON.stringify(dir)}, wildcard: false });
const r = await app.inject('/hello.txt');
console.log(before, globLoaded(), r.statusCode, JSON.stringify(r.body));`,
    );
    expect(out.trim()).toBe('false true 200 "hello\\n"');
    expect(code).not.toMatch(/node_modules\/glob\//);
    expect(code).toMatch(/node_modules\/@fastify\/static\/index\.js/);
  }, 60_000);

  it("prom-client's parts without its push gateway and cluster aggregator: zlib and cluster are not loaded", async () => {
    const { out, code } = await bundleAndRun(
      'prom',
      `import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
const register = new Registry();
collectDefaultMetrics({ register });
new Counter({ name: 'c_total', help: 'c', registers: [register] }).inc(2);
const text = await register.metrics();
console.log(/^c_total 2$/m.test(text), /^process_cpu_user_seconds_total /m.test(text), process.moduleLoadList.some((m) => / (zlib|cluster)$/.test(m)));`,
    );
    expect(out.trim()).toBe('true true false');
    expect(code).not.toMatch(/prom-client\/lib\/(pushgateway|cluster)\.js/);
    expect(code).not.toMatch(/node_modules\/@opentelemetry\//);
  }, 60_000);
});
