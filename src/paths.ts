/**
 * Where execd's files are, from the code that runs: this module is src/paths.ts (tsx), dist/paths.js (tsc), or
 * inlined into dist/main.js or one of its chunks (the bundle `npm run build` makes: scripts/bundle.mjs), each one
 * level below the package's root. Modules in subdirectories ask here rather than resolve from their own
 * import.meta.url, which in the bundle is the bundle's.
 */
/** The package's root (package.json, native/). */
export const PACKAGE_ROOT = new URL('../', import.meta.url);
/** The directory of the code that runs: src/ or dist/ (the Redis backend's Lua scripts, the built dashboard). */
export const CODE_DIR = new URL('./', import.meta.url);
