import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/** Import direction in src/ (scripts/layers.json): nothing imports a part above it, nor a peer of its layer. */

interface Layers {
  layers: Array<{ name: string; modules: string[] }>;
  pending: Array<{ from: string; to: string; why: string }>;
}

const root = resolve(import.meta.dirname, '../..');
const config = JSON.parse(readFileSync(join(root, 'scripts/layers.json'), 'utf8')) as Layers;
const modules = config.layers.flatMap((layer, rank) => layer.modules.map((module) => ({ module, rank })));

const moduleOf = (file: string) =>
  modules.filter(({ module }) => file === module || file.startsWith(`${module}/`)).sort((a, b) => b.module.length - a.module.length)[0];

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every relative import of src/, type-only ones included: `from '…'`, `import('…')`, `export … from '…'`. */
function imports(): Array<{ file: string; target: string }> {
  return sourceFiles('src').flatMap((file) =>
    [...readFileSync(join(root, file), 'utf8').matchAll(/(?:\bfrom|\bimport\s*\(?)\s*'(\.{1,2}\/[^']+)'/g)].map(([, spec]) => ({
      file,
      target: relative(root, resolve(root, dirname(file), spec!)).replace(/\.js$/, '.ts'),
    })),
  );
}

describe('layering (scripts/layers.json)', () => {
  const found = imports();

  it('places every file of src/ in a layer', () => {
    expect(sourceFiles('src').filter((f) => !moduleOf(f))).toEqual([]);
  });

  it('has no import from a lower part to a higher one, nor between peers, but the pending ones', () => {
    const wrong = new Set<string>();
    for (const { file, target } of found) {
      const from = moduleOf(file)!;
      const to = moduleOf(target);
      if (!to || to.module === from.module || to.rank > from.rank) continue;
      if (config.pending.some((p) => p.from === from.module && p.to === to.module)) continue;
      wrong.add(`${file} -> ${target}`);
    }
    expect([...wrong]).toEqual([]);
  });

  it('lists no pending edge that is gone (remove it from scripts/layers.json)', () => {
    const edges = new Set(found.map(({ file, target }) => `${moduleOf(file)?.module} -> ${moduleOf(target)?.module}`));
    expect(config.pending.filter((p) => !edges.has(`${p.from} -> ${p.to}`))).toEqual([]);
  });
});
