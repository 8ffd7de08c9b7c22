import { jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { ERROR_CODES } from './errors.js';

type Json = Record<string, any>;

const STATUS_TEXT: Record<string, string> = { 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content' };

/** Every error code that answers with this status, for the response's description. */
function codesFor(status: string): string {
  return Object.entries(ERROR_CODES)
    .filter(([, v]) => String(v.status) === status)
    .map(([k]) => `\`${k}\``)
    .join(', ');
}

function collectRefs(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) node.forEach((n) => collectRefs(n, into));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') into.add(v.replace('#/components/schemas/', ''));
      else collectRefs(v, into);
    }
  }
}

function renameRefs(node: unknown, from: string, to: string): void {
  if (Array.isArray(node)) node.forEach((n) => renameRefs(n, from, to));
  else if (node && typeof node === 'object') {
    const obj = node as Json;
    for (const [k, v] of Object.entries(obj)) {
      if (k === '$ref' && v === `#/components/schemas/${from}`) obj[k] = `#/components/schemas/${to}`;
      else renameRefs(v, from, to);
    }
  }
}

/**
 * zod-type-provider's document, tidied: errors declared as application/problem+json,
 * responses described, and the input/output twins of each schema reduced to the one in use.
 */
export const transformOpenApi: typeof jsonSchemaTransformObject = (input) => {
  const doc = jsonSchemaTransformObject(input) as Json;
  for (const ops of Object.values<Json>(doc.paths ?? {})) {
    for (const op of Object.values<Json>(ops)) {
      for (const [status, res] of Object.entries<Json>(op.responses ?? {})) {
        if (Number(status) >= 400 && res.content?.['application/json']) {
          res.content = { 'application/problem+json': res.content['application/json'] };
          res.description = `Problem: ${codesFor(status) || 'error'}`;
        } else if (res.description === 'Default Response') {
          res.description = STATUS_TEXT[status] || 'Response';
        }
      }
    }
  }
  // Prune the schema variants no operation refers to (transitively).
  const schemas: Json = doc.components?.schemas ?? {};
  const used = new Set<string>();
  collectRefs(doc.paths, used);
  let grew = true;
  while (grew) {
    const before = used.size;
    for (const name of [...used]) collectRefs(schemas[name], used);
    grew = used.size > before;
  }
  for (const name of Object.keys(schemas)) if (!used.has(name)) delete schemas[name];
  for (const name of Object.keys(schemas)) {
    const base = name.replace(/Input$/, '');
    if (base !== name && !schemas[base]) {
      schemas[base] = schemas[name];
      delete schemas[name];
      renameRefs(doc, name, base);
    }
  }
  doc.components.schemas = Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b)));
  return doc as ReturnType<typeof jsonSchemaTransformObject>;
};
