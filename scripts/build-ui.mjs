// Builds the dashboard (ui/) into dist/ui: one minified ES module (app.js), one stylesheet (app.css, xterm's
// included) and index.html. `npm run build` runs it; the browser tests run it once when dist/ui is older than ui/.
// Usage: node scripts/build-ui.mjs [outdir]
import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export async function buildUi(outdir = join(root, 'dist/ui')) {
  const tmp = `${outdir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await build({
    entryPoints: { app: join(root, 'ui/src/main.tsx') },
    outdir: tmp,
    bundle: true,
    format: 'esm',
    target: ['chrome111', 'firefox115', 'safari16'],
    minify: true,
    sourcemap: false,
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'none',
    logLevel: 'warning',
  });
  copyFileSync(join(root, 'ui/index.html'), join(tmp, 'index.html'));
  // Precompressed copies, which @fastify/static sends to a client that accepts them (preCompressed).
  const sizes = {};
  for (const file of readdirSync(tmp)) {
    const data = readFileSync(join(tmp, file));
    writeFileSync(join(tmp, `${file}.gz`), gzipSync(data, { level: 9 }));
    const br = brotliCompressSync(data);
    writeFileSync(join(tmp, `${file}.br`), br);
    sizes[file] = { bytes: data.length, brotli: br.length };
  }
  // Swap the whole directory at once: a server serving dist/ui never sees half a build.
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(dirname(outdir), { recursive: true });
  renameSync(tmp, outdir);
  return sizes;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sizes = await buildUi(process.argv[2] ? resolve(process.argv[2]) : undefined);
  console.log(`dist/ui: ${Object.entries(sizes).map(([f, s]) => `${f} ${(s.bytes / 1024).toFixed(0)} KiB (${(s.brotli / 1024).toFixed(0)} KiB brotli)`).join(', ')}`);
}
