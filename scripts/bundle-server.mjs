// Bundles the server (src/main.ts) into dist/main.js and its chunks (dist/server-*.js), in place of tsc's: one module
// graph of a few files instead of ~650, without comments or indentation. At rest the server then holds less: V8 keeps
// every module's source, and Node's loader a record per module (measured in docs/benchmarks.md: RSS at rest −3 MiB,
// a faster start). Identifiers keep their names (error classes and plugins are known by them), and dynamic imports
// stay lazy (the Redis backend is a chunk of its own). Left outside, as packages: what finds its own files at run time
// (pino's transports, BullMQ's Lua scripts, @fastify/swagger's package.json, the Swagger UI's and @fastify/static's
// assets), and what only some deployments load (BullMQ, ioredis). tsc's dist/ stays as it is for everything else
// (the CLI, the client library).
// Each file is written beside its place and renamed there, so that a server starting meanwhile reads a whole file.
// `npm run build` runs it after tsc (which type-checks); usage: node scripts/bundle-server.mjs [distdir]
import { readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const EXTERNAL = ['pino', 'pino-pretty', 'thread-stream', 'bullmq', 'ioredis', '@fastify/swagger', '@fastify/swagger-ui', '@fastify/static'];

/**
 * Node's modules that packages inside require at their top but use only in functions execd never calls: fastify's
 * HTTPS and HTTP/2 servers, ws's client (https, tls) and its compression (zlib, loaded at a client's first deflated
 * message). Loading node:http2 alone is ~4 MiB of RSS, https and tls ~2 more. Each such require() gets an object that
 * loads the module at the first use of one of its properties; an ES import of them (execd's own code) is untouched.
 */
const LAZY_BUILTINS = ['http2', 'https', 'tls', 'zlib'];
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    const filter = new RegExp(`^(node:)?(${LAZY_BUILTINS.join('|')})$`);
    b.onResolve({ filter }, (args) =>
      args.kind === 'require-call' && args.namespace === 'file' ? { path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      loader: 'js',
      contents: `let m; const load = () => (m ??= require('node:${args.path}'));
module.exports = new Proxy({}, {
  get: (_, k) => load()[k],
  has: (_, k) => k in load(),
  ownKeys: () => Reflect.ownKeys(load()),
  getOwnPropertyDescriptor: (_, k) => { const d = Reflect.getOwnPropertyDescriptor(load(), k); if (d) d.configurable = true; return d; },
});`,
    }));
  },
};

export async function bundleServer(dist = join(root, 'dist')) {
  const result = await build({
    entryPoints: [join(root, 'src/main.ts')],
    outdir: dist,
    write: false,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    tsconfig: join(root, 'tsconfig.build.json'),
    entryNames: '[name]',
    chunkNames: 'server-[hash]',
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'eof',
    sourcemap: 'linked',
    external: EXTERNAL,
    // The CommonJS packages inside call require() for Node's own modules.
    banner: { js: "import { createRequire as __execdRequire } from 'node:module'; const require = __execdRequire(import.meta.url);" },
    plugins: [lazyBuiltins],
    metafile: true,
    logLevel: 'warning',
  });
  for (const file of result.outputFiles) {
    const tmp = `${file.path}.tmp-${process.pid}`;
    writeFileSync(tmp, file.contents);
    renameSync(tmp, file.path);
  }
  // Chunks of an earlier build (their names are their contents' hashes).
  const made = new Set(result.outputFiles.map((f) => f.path));
  for (const f of readdirSync(dist)) if (/^server-.*\.js(\.map)?$/.test(f) && !made.has(join(dist, f))) rmSync(join(dist, f), { force: true });
  return result.metafile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const meta = await bundleServer(process.argv[2] ? resolve(process.argv[2]) : undefined);
  const out = Object.entries(meta.outputs).filter(([f]) => f.endsWith('.js'));
  const bytes = out.reduce((n, [, o]) => n + o.bytes, 0);
  console.log(`dist: main.js and ${out.length - 1} chunks, ${(bytes / 1024).toFixed(0)} KiB, from ${Object.keys(meta.inputs).length} modules`);
}
