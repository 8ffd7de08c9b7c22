/** The top of openapi.yaml; routes add the rest from their zod schemas. */
export const OPENAPI_INFO = {
  openapi: '3.1.0',
  info: {
    title: 'execd',
    version: '1.0.0',
    description:
      "Run commands on a host over HTTP and WebSocket: Python's `os` and `subprocess` for the network. " +
      'Every error is application/problem+json with a machine-readable `code`.',
    license: { name: 'MIT', identifier: 'MIT' },
  },
  servers: [{ url: 'http://127.0.0.1:8080' }],
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
