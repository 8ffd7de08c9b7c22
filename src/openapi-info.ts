import { readFileSync } from 'node:fs';
import { PACKAGE_ROOT } from './paths.js';

/** One version number: the package's (package.json sits one directory above src/ and dist/ alike). */
const VERSION = (JSON.parse(readFileSync(new URL('package.json', PACKAGE_ROOT), 'utf8')) as { version: string }).version;

/** The top of openapi.yaml; routes add the rest from their zod schemas. */
export const OPENAPI_INFO = {
  openapi: '3.1.0',
  info: {
    title: 'execd',
    version: VERSION,
    description:
      "Run commands on a host over HTTP and WebSocket: Python's `os` and `subprocess` for the network. " +
      'Every error is application/problem+json with a machine-readable `code`; every JSON answer ends with a newline. ' +
      '`GET /` points to this document, browsable at `/docs`.',
    license: { name: 'MIT', identifier: 'MIT' },
  },
  // Relative: resolved against wherever the document was fetched from, so /docs "Try it out" calls the server
  // that served the page, on whatever address and port it listens.
  servers: [{ url: '/', description: 'the execd that serves this document' }],
  components: {
    securitySchemes: {
      bearer: { type: 'http' as const, scheme: 'bearer', description: 'EXECD_TOKEN, or a token of EXECD_TOKENS_FILE' },
    },
  },
  security: [{ bearer: [] }],
  tags: [
    { name: 'process info', description: "The server process and the host's processes" },
    { name: 'run', description: 'Synchronous runs' },
    { name: 'subprocess', description: "CPython's subprocess functions, with CPython's results" },
    { name: 'jobs', description: 'Asynchronous jobs, queued FIFO and drained by worker pools' },
    { name: 'operations', description: 'Health, readiness and metrics' },
  ],
};
