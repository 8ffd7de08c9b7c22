import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './server.js';

/** Newest modification time of the files under `dir`. */
function newest(dir: string): number {
  let max = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    max = Math.max(max, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return max;
}

/**
 * The dashboard's build (dist/ui), made when missing or older than ui/ or its build script: `npm test` runs
 * without `npm run build` (CI runs `npm ci` then `npm test`), and esbuild takes well under a second.
 */
export async function buildUiOnce(): Promise<void> {
  const index = join(ROOT, 'dist/ui/index.html');
  const sources = Math.max(newest(join(ROOT, 'ui')), statSync(join(ROOT, 'scripts/build-ui.mjs')).mtimeMs);
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  const { buildUi } = (await import(join(ROOT, 'scripts/build-ui.mjs'))) as { buildUi: () => Promise<unknown> };
  await buildUi();
}
