// The linter's packages, re-exported for eslint.config.js.
//
// typescript-eslint needs TypeScript's JS API, which TypeScript 7 (the project's compiler, a native build) no longer
// ships. This package depends on TypeScript 6 for the linter alone, and npm installs that copy here
// (tools/lint/node_modules/typescript), apart from the project's. npm still hoists ts-api-utils to the root (its
// peer range, typescript >=4.8.4, takes TypeScript 7), where `require('typescript')` would find TypeScript 7: so, in
// the ESLint process only, CommonJS's resolution of 'typescript' (typescript-eslint and ts-api-utils load it with
// require) gives this package's copy. Module._resolveFilename, not module.registerHooks: the hook needs Node 22.15,
// and the linter must run on every Node that runs npm test.
import Module, { createRequire } from 'node:module';

const typescript6 = createRequire(import.meta.url).resolve('typescript');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return request === 'typescript' ? typescript6 : resolve.call(this, request, ...rest);
};

export const { default: js } = await import('@eslint/js');
export const { default: globals } = await import('globals');
export const { default: tseslint } = await import('typescript-eslint');
