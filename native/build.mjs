#!/usr/bin/env node
// Build the native spawner (native/binding.gyp: the execd_spawn addon and execd-spawn-helper)
// from source with node-gyp, during `npm ci` (the package's install script) or by hand
// (`npm run native:build`). No prebuilt binaries, no downloads when this Node's headers are
// on disk (they are for distribution packages, the official tarballs and Docker images).
//
// A failed build does not fail the install: execd then uses child_process and says so at
// start and in /v1/info. EXECD_NATIVE_BUILD=required makes a failure fatal (for CI and
// Docker images that must have it); EXECD_NATIVE_BUILD=skip does not try.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const mode = process.env.EXECD_NATIVE_BUILD ?? 'auto';
const say = (msg) => process.stderr.write(`execd native spawner: ${msg}\n`);

function giveUp(why) {
  if (mode === 'required') {
    say(`build failed (${why}) and EXECD_NATIVE_BUILD=required`);
    process.exit(1);
  }
  say(`not built (${why}); execd will spawn with child_process`);
  process.exit(0);
}

if (mode === 'skip') giveUp('EXECD_NATIVE_BUILD=skip');
if (process.platform !== 'linux') giveUp(`${process.platform} is not supported, Linux only`);

// npm gives lifecycle scripts the node-gyp it bundles; elsewhere, a node-gyp we can find.
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  const require = createRequire(import.meta.url);
  for (const from of [here, join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm')]) {
    try {
      candidates.push(require.resolve('node-gyp/bin/node-gyp.js', { paths: [from] }));
    } catch {
      // not there
    }
  }
  return candidates.find((c) => c && existsSync(c));
}

const nodeGyp = findNodeGyp();
if (!nodeGyp) giveUp('node-gyp not found');

const args = [nodeGyp, 'rebuild', `--directory=${here}`, '--jobs=max'];
// This Node's own headers (prefix/include/node) when present: no header download.
const prefix = dirname(dirname(process.execPath));
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);

const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
if (r.status !== 0) {
  rmSync(join(here, 'build'), { recursive: true, force: true }); // no half-built addon for execd to trip on
  giveUp(r.error ? r.error.message : `node-gyp exited with ${r.status ?? r.signal}`);
}
say('built');
