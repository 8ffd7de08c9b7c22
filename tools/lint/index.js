// The linter's packages, re-exported for eslint.config.js.
//
// typescript-eslint needs TypeScript's JS API, which TypeScript 7 (the project's compiler, a native build) no longer
// ships. This package depends on TypeScript 6 for the linter alone, and npm installs that copy here
// (tools/lint/node_modules/typescript), apart from the project's. npm still hoists some of typescript-eslint's
// dependencies (ts-api-utils) to the root, where `require('typescript')` would find TypeScript 7: so, in the ESLint
// process only, 'typescript' is resolved to this package's copy.
import { createRequire, registerHooks } from 'node:module';
import { pathToFileURL } from 'node:url';

const typescript6 = pathToFileURL(createRequire(import.meta.url).resolve('typescript')).href;
registerHooks({
  resolve: (specifier, context, next) =>
    specifier === 'typescript' ? { url: typescript6, shortCircuit: true } : next(specifier, context),
});

export const { default: js } = await import('@eslint/js');
export const { default: globals } = await import('globals');
export const { default: tseslint } = await import('typescript-eslint');
