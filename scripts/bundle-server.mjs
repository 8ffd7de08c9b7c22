// Bundles the server (src/main.ts) into dist/main.js and its chunks (dist/server-*.js), in place of tsc's: one module
// graph of a few files instead of ~650, without comments or indentation. At rest the server then holds less: V8 keeps
// every module's source, and Node's loader a record per module (measured in docs/benchmarks.md: RSS at rest −3 MiB,
// a faster start). Identifiers keep their names (error classes and plugins are known by them), and dynamic imports
// stay lazy (the Redis backend is a chunk of its own). Left outside, as packages: what finds its own files at run time
// (pino's transports, BullMQ's Lua scripts), and what only some deployments load (BullMQ, ioredis). The Swagger UI
// is bundled and finds its assets in its package (packageDirs); @fastify/swagger reads its package.json only for a
// document's default title and version, which app.ts gives. tsc's dist/ stays as it is for everything else (the
// CLI, the client library).
// Each file is written beside its place and renamed there, so that a server starting meanwhile reads a whole file.
// `npm run build` runs it after tsc (which type-checks); usage: node scripts/bundle-server.mjs [distdir]
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const EXTERNAL = ['pino', 'pino-pretty', 'thread-stream', 'bullmq', 'ioredis'];

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

/**
 * Packages that packages inside require but execd's server never runs: fastify's default compilers (Ajv and
 * fast-json-stringify: execd's zod compiles every route, app.ts) and its `inject` (light-my-request),
 * @fastify/websocket's `injectWS` (duplexify), prom-client's exemplars (@opentelemetry/api). Bundled, each is
 * source text the server holds at rest (~500 KiB of it). Left out, a require of one gets a stand-in that loads
 * the package at its first use, from the package that requires it (a nested copy is found as well as a hoisted one).
 * Each lists the functions a package takes from it as it is required (`const { glob } = require('glob')`): the
 * stand-in's are functions that load it when called.
 */
const LAZY_PACKAGES = {
  'light-my-request': [],
  '@fastify/ajv-compiler': [],
  '@fastify/fast-json-stringify-compiler': [],
  duplexify: [],
  '@opentelemetry/api': [],
  // @fastify/swagger's and the Swagger UI's YAML output, and the $ref resolver, needed when the document is first asked for.
  yaml: [],
  'json-schema-resolver': [],
  // @fastify/static's file list for `wildcard: false` (execd serves with wildcards).
  glob: ['glob'],
};
const lazyPackages = {
  name: 'lazy-packages',
  setup(b) {
    const filter = new RegExp(`^(${Object.keys(LAZY_PACKAGES).map((p) => p.replace(/[/.]/g, '\\$&')).join('|')})$`);
    b.onResolve({ filter }, (args) => {
      const owner = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(args.importer)?.[1];
      if (args.kind !== 'require-call' || !owner) return undefined;
      return { path: args.path, namespace: 'lazy-package', pluginData: { owner } };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-package' }, (args) => ({
      loader: 'js',
      contents: `let m; const load = () => (m ??= require('node:module').createRequire(require.resolve(${JSON.stringify(args.pluginData.owner)}))(${JSON.stringify(args.path)}));
const taken = { ${LAZY_PACKAGES[args.path].map((f) => `${JSON.stringify(f)}: (...a) => load()[${JSON.stringify(f)}](...a)`).join(', ')} };
// A function, so that the stand-in can be called and constructed (or extended) as well as read, as the package it
// stands for.
const standIn = new Proxy(function lazy() {}, {
  get: (_, k) => (Object.hasOwn(taken, k) ? taken[k] : load()[k]),
  has: (_, k) => k in load(),
  apply: (_, self, args) => Reflect.apply(load(), self, args),
  construct: (_, args, newTarget) => Reflect.construct(load(), args, newTarget === standIn ? load() : newTarget),
});
module.exports = standIn;`,
    }));
  },
};

/**
 * prom-client's index also requires its push gateway, which takes zlib's gzipSync at its top (loading zlib, ~0.5 MiB
 * at rest), and its cluster aggregator: execd imports the parts it uses from their own files instead. A name
 * src/ imports that is not listed here fails the build ("No matching export").
 */
const promClientParts = {
  name: 'prom-client-parts',
  setup(b) {
    b.onResolve({ filter: /^prom-client$/ }, (args) =>
      // execd's modules import it; a package's require() of it (none today) would get the whole.
      args.kind === 'import-statement' ? { path: 'prom-client', namespace: 'prom-client-parts' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'prom-client-parts' }, () => ({
      loader: 'js',
      resolveDir: root,
      contents: ['Registry:registry', 'Counter:counter', 'Gauge:gauge', 'Histogram:histogram', 'collectDefaultMetrics:defaultMetrics']
        .map((e) => e.split(':'))
        .map(([name, file]) => `export { default as ${name} } from 'prom-client/lib/${file}.js';`)
        .join('\n'),
    }));
  },
};

/**
 * Bundled packages that read their own files (the Swagger UI's page, logo and scripts): their `__dirname` is where
 * the package is installed, found at run time, instead of dist/.
 */
const PACKAGE_DIRS = ['@fastify/swagger-ui'];
const packageDirs = {
  name: 'package-dirs',
  setup(b) {
    for (const name of PACKAGE_DIRS) {
      const dir = join(root, 'node_modules', name);
      b.onLoad({ filter: new RegExp(`^${dir.replace(/[/.]/g, '\\$&')}/.*\\.js$`) }, (args) => {
        const rel = JSON.stringify(dirname(args.path).slice(dir.length + 1) || '.');
        const at = `require('node:path').join(require('node:path').dirname(require.resolve(${JSON.stringify(name)})), ${rel})`;
        return { loader: 'js', contents: readFileSync(args.path, 'utf8').replace(/\b__dirname\b/g, `(${at})`) };
      });
    }
  },
};

/** The bundle's plugins, in order (test/unit/bundle-server.test.ts bundles with them too). */
export const PLUGINS = [lazyBuiltins, lazyPackages, promClientParts, packageDirs];

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
    plugins: PLUGINS,
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
