#!/usr/bin/env node
// The `execd` command. It runs the built CLI (dist/cli/main.js: `npm run build`, which `npm start` runs too).
// In a clone that is not built yet it runs the TypeScript sources through tsx (a dev dependency) instead;
// EXECD_CLI_FROM_SOURCE=1 asks for the sources even when dist/ exists (the tests do, so that they never run a stale build).
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli/main.js', import.meta.url);
const source = new URL('../src/cli/main.ts', import.meta.url);
const [major] = process.versions.node.split('.').map(Number);

if (major < 22) {
  process.stderr.write(`execd: needs Node.js 22 or later (this is ${process.version})\n`);
  process.exit(70);
}
if (existsSync(built) && process.env.EXECD_CLI_FROM_SOURCE !== '1') {
  await import(built.href);
} else if (existsSync(source) && (await import('tsx/esm/api').then((tsx) => (tsx.register(), true), () => false))) {
  await import(source.href);
} else {
  process.stderr.write('execd: the CLI is not built: run `npm run build` in the execd folder (after `npm ci`), then try again\n');
  process.exit(70);
}
