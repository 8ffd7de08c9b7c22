/**
 * openapi.yaml is generated from the zod schemas of the routes.
 *   --write  regenerate it
 *   --check  exit 1 when the committed file differs from what the code generates
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { buildApp } from '../src/app.js';
import { parseConfig } from '../src/config.js';

const target = fileURLToPath(new URL('../openapi.yaml', import.meta.url));

export async function generateOpenApi(): Promise<string> {
  const app = await buildApp(parseConfig({ EXECD_TOKEN: 'openapi-generation-token', EXECD_QUEUES: 'default:1' }));
  await app.ready();
  const doc = app.swagger();
  await app.close();
  return '# Generated from the zod schemas by `npm run openapi`; do not edit by hand.\n' + stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}

const mode = process.argv[2];
const text = await generateOpenApi();
if (mode === '--write') {
  writeFileSync(target, text);
  console.log('wrote openapi.yaml');
} else if (mode === '--check') {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // missing counts as different
  }
  if (current !== text) {
    console.error('openapi.yaml is out of date: run `npm run openapi` and commit the result');
    const a = current.split('\n');
    const b = text.split('\n');
    const i = a.findIndex((line, n) => line !== b[n]);
    if (i >= 0) console.error(`first difference at line ${i + 1}:\n- ${a[i] ?? ''}\n+ ${b[i] ?? ''}`);
    process.exit(1);
  }
  console.log('openapi.yaml is up to date');
} else {
  console.error('usage: openapi.ts --write | --check');
  process.exit(2);
}
