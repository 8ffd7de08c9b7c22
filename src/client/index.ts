/**
 * execd's typed client: `import { ExecdClient } from 'execd/client'`. Isomorphic (global fetch and
 * WebSocket only), for Node 22+ services, scripts and the browser dashboard alike.
 */
export { ExecdClient, exitOf, type ClientOptions } from './client.js';
export { ExecdError } from './errors.js';
export { fromBase64, toBase64, outputBytes, concatBytes } from './bytes.js';
export { parseBinaryFrame, type StreamOptions } from './stream.js';
export type { FollowOptions } from './follow.js';
export { isTerminal, labelParams, TERMINAL_STATES } from './types.js';
export type * from './types.js';
