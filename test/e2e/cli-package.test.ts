import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { ROOT } from '../helpers/server.js';

// The package's bin and exports point at what `npm run build` writes, and `npm pack` ships what they need.

const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8'));
/** Where tsconfig.build.json writes a source file (src/x.ts → dist/x.js). */
const built = (src: string) => src.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js');

test('bin and exports: the bin is there and executable; "." is the server, "./client" the client, with its types', () => {
  expect(pkg.bin).toEqual({ execd: 'bin/execd.js' });
  expect(readFileSync(`${ROOT}bin/execd.js`, 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
  expect(readFileSync(`${ROOT}bin/execd.js`, 'utf8')).toContain(`'../${built('src/cli/main.ts')}'`);
  expect(existsSync(`${ROOT}src/cli/main.ts`)).toBe(true);
  expect(pkg.exports['.']).toBe(`./${built('src/main.ts')}`);
  expect(pkg.exports['./client']).toEqual({ types: './dist/client/index.d.ts', default: `./${built('src/client/index.ts')}` });
  expect(JSON.parse(readFileSync(`${ROOT}tsconfig.build.json`, 'utf8')).compilerOptions).toMatchObject({ outDir: 'dist', rootDir: 'src', declaration: true });
});

test('npm pack ships the bin, the build and the native sources, and no tests or sources of the build', () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const files: string[] = JSON.parse(out)[0].files.map((f: { path: string }) => f.path);
  for (const needed of ['bin/execd.js', 'package.json', 'native/build.mjs', 'native/binding.gyp', 'native/helper.c', '.env.example']) {
    expect(files).toContain(needed);
  }
  expect(files.filter((f) => f.startsWith('test/') || f.startsWith('src/') || f.startsWith('node_modules/'))).toEqual([]);
  // dist/ is there when the tree is built (npm run build); then it carries the CLI and the client.
  if (existsSync(`${ROOT}dist/cli/main.js`)) expect(files).toEqual(expect.arrayContaining(['dist/cli/main.js', 'dist/client/index.js', 'dist/client/index.d.ts']));
});
