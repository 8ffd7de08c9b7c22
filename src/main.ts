import type { FastifyInstance } from 'fastify';
import { limitMallocArenas } from './runner/native-addon.js';
import { setOptimizing } from './services/tiers.js';
import type { Config } from './config.js';
import type { RecoveryReport } from './ops/recovery.js';

/*
 * The start-up runs without V8's optimizing compilers (TurboFan; Maglev too on Node 24), which come back with the
 * first request (and go again at each rest: services/tiers.ts). Loading the modules makes Node's own loader hot
 * (path resolution, the CommonJS export lexer), and TurboFan compiled ~70 of its functions during the start: its
 * zones and code stayed in RSS (anonymous, ~10 MiB) and its own machine code (~5 MiB of the node binary's text) was
 * paged in, for code that never runs again (measured in docs/benchmarks.md: RSS at rest −15 MiB, same start-up
 * time). Requests are served with TurboFan as before. The modules are therefore imported here, after the flags,
 * rather than statically (a static import is loaded before any line of this file runs); only the addon and
 * services/tiers.ts, which sets the flags, are static imports, and they are small.
 * V8 flags given to node that choose the tiers (`--no-opt`, `--no-maglev`, `--max-opt`, `--jitless`…) are left as
 * they are.
 */
/*
 * Two malloc arenas, as `npm start`, the Dockerfile and execd.service ask with MALLOC_ARENA_MAX=2, also when node
 * runs dist/main.js directly: glibc's default, 8 per core, fragmented the C heap under load (docs/benchmarks.md).
 * First thing, before the start's threads (V8's, libuv's) have each made an arena of their own: a thread that has
 * one keeps it. On Node 24 node's own start has already made 2-5 by then, and only the variable bounds those.
 * A MALLOC_ARENA_MAX or glibc.malloc.arena_max given is glibc's to apply, from the start.
 */
if (process.env.MALLOC_ARENA_MAX === undefined && !/\barena_max\b/.test(process.env.GLIBC_TUNABLES ?? '')) limitMallocArenas(2);
const tiersGiven = /--(no-)?(opt|turbofan|maglev)\b|--max-opt|--jitless/.test(`${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`);
if (!tiersGiven) setOptimizing(false);
const [
  { isatty },
  { default: closeWithGrace },
  { default: pino },
  { buildApp, LOG_REDACT },
  { ConfigError, loadConfig },
  { recoverPreviousInstances, registerInstance },
  { setDumpable },
  { IDLE_TRIM_DEFAULTS, startIdleTrim },
  { WorkSwitches, requestSeen },
] = await Promise.all([
  import('node:tty'),
  import('close-with-grace'),
  import('pino'),
  import('./app.js'),
  import('./config.js'),
  import('./ops/recovery.js'),
  import('./runner/native-helper.js'),
  import('./services/idle-trim.js'),
  import('./services/tiers.js'),
]);

/** Settings (and files they name) that fail: one line on stderr, exit 2. */
function refuse(err: unknown): never {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`execd: ${err.message}\n`);
  process.exit(2);
}

/**
 * Started with an IPC channel (child_process.fork, or an 'ipc' stdio slot: the tests do), execd lives no
 * longer than its parent: the channel closes when the parent dies, even by SIGKILL, and execd then shuts
 * down as on SIGTERM. Watched from the first line (a parent can die during the start); the channel is
 * unref'd, so that it alone keeps nothing running. Null when started otherwise.
 */
function watchParent(): Promise<void> | null {
  if (!process.channel) return null;
  process.channel.unref();
  return new Promise((resolve) => process.once('disconnect', () => resolve()));
}

/** 0 once the server is not dumpable; an errno, or null without the native addon (main). */
let notDumpable: number | null = null;

/** The only place that reads process.env, listens, and shuts down. */
async function main(): Promise<void> {
  const parentExited = watchParent();
  // Not dumpable, first thing: a child running as our own user (no run-as) can then neither read our
  // /proc/<pid>/environ (EXECD_TOKEN) or memory nor ptrace us (docs/security.md). Needs the native addon.
  notDumpable = setDumpable(false);
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    refuse(err);
  }

  const pretty = isatty(1) && process.env.NO_COLOR === undefined;
  const app = await buildApp(config, {
    logger: {
      level: config.logLevel,
      redact: { paths: LOG_REDACT, censor: '[redacted]' },
      // A terminal gets pino-pretty; anything else gets each line written at once, synchronously, as
      // Python's logging and Go's log do: an audit line is out before the answer leaves, and is never
      // lost in a crash or held in memory behind a slow reader. (pino's default, asynchronous writes
      // through libuv's thread pool, cost two thread hand-offs per line: a tenth of a POST /v1/run.)
      ...(pretty
        ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } }
        : { stream: pino.destination({ dest: 1, sync: true }) }),
    },
  }).catch(refuse); // a bad EXECD_TOKENS_FILE, EXECD_POLICY_FILE or EXECD_RUN_AS: one line, as for a bad setting

  // Graceful shutdown (docs/operations.md): drain, stop what is left at EXECD_SHUTDOWN_GRACE_MS, close.
  // close-with-grace bounds it (EXECD_SHUTDOWN_TIMEOUT_MS) and handles crashes; the signals are ours,
  // since its default answer to a second signal is an immediate exit that would leave the jobs behind.
  // Installed before anything else can take time, so that a signal is never met by Node's default (instant death).
  let reason: string | null = null;
  let unregister = () => {};
  let listened = () => {};
  const listening = new Promise<void>((resolve) => (listened = resolve));
  const lastResort = (why: string) => {
    const killed = app.shutdown.killNow();
    app.log.error({ processGroups: killed }, `${why}: exiting now; the process groups still running were killed`);
  };
  const graceful = closeWithGrace(
    {
      delay: config.shutdownTimeoutMs,
      skip: ['SIGHUP', 'SIGTERM', 'SIGINT'],
      logger: { error: (err: unknown) => app.log.error({ err }, 'shutdown failed') },
      onTimeout: () => lastResort(`shutdown took longer than EXECD_SHUTDOWN_TIMEOUT_MS (${config.shutdownTimeoutMs} ms)`),
      onSecondError: () => lastResort('a second fatal error during shutdown'),
    },
    async ({ err }) => {
      if (err) app.log.error({ err }, 'shutting down after an error');
      await app.shutdown.run(reason ?? (err ? 'error' : 'exit'));
      if (app.services.tracker.size === 0) unregister(); // else the next start recovers what is left
      await settleLog(app);
    },
  );
  const shutDown = (why: string) => {
    if (reason !== null) {
      app.log.info({ signal: why, phase: app.shutdown.phase }, 'already shutting down; signal ignored');
      return;
    }
    reason = why;
    // A signal during the start waits for it (recovery, listen) to end, then shuts down as usual.
    void listening.then(() => graceful.close());
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => shutDown(signal));
  void parentExited?.then(() => reason === null && shutDown('parent exited (IPC channel closed)'));

  try {
    await start(app, config, (remove) => (unregister = remove));
  } finally {
    listened();
  }
  // Started, and at rest: TurboFan and the load-shedding sampler come back with the first request or busy look, and
  // go at each idle one (services/tiers.ts). Tier flags given to node are left alone.
  const shedding = app.loadShedding;
  const work = WorkSwitches.atRest(app.server, [
    ...(tiersGiven ? [] : [setOptimizing]),
    ...(shedding ? [(on: boolean) => shedding.sample(on)] : []),
  ]);
  // Quiet: no request, and no run started or going on, since the last look of the idle trim.
  const requested = requestSeen(app.server);
  const { tracker } = app.services;
  let started = tracker.started;
  const quiet = (): boolean => {
    const request = requested(); // asked every time: it listens again from here
    const run = tracker.started !== started;
    started = tracker.started;
    return !request && !run && tracker.size === 0;
  };
  // At rest, the heap a burst grew and the C heap's free pages are given back (services/idle-trim.ts).
  startIdleTrim({
    ...IDLE_TRIM_DEFAULTS,
    quiet,
    onBusy: () => work.busy(),
    onIdle: () => work.rest(),
    onTrim: ({ heapBefore, heapAfter, rssBefore, rssAfter, ms, mallocTrimmed, collected }) =>
      app.log.debug({ heapBefore, heapAfter, rssBefore, rssAfter, ms: Math.round(ms), mallocTrimmed, collected }, 'idle: memory given back'),
  });
}

/** Recovery, the instance record, listening, and the start-up lines. */
async function start(app: FastifyInstance, config: Config, registered: (unregister: () => void) => void): Promise<void> {
  // Start-up recovery, before any work is taken: what a crashed earlier instance left running is killed.
  const recovery = await recoverPreviousInstances(config.instanceDir, config.killGraceMs).catch(refuse);
  registered(registerInstance(config.instanceDir, app.services.instanceId, app.services.files));

  // The first log line says where execd listens.
  const url = await app.listen({ host: config.host, port: config.port, listenTextResolver: (address) => `execd listening on ${address}` });
  // An accept that fails (EMFILE past libuv's own reserve descriptor) is an 'error' on the listening server:
  // logged, and the server goes on accepting; unhandled it would end the process.
  app.server.on('error', (err) => app.log.error({ err }, 'the server could not accept a connection'));
  const cluster = config.queueBackend === 'redis' ? { role: config.role, node: config.nodeId, redisPrefix: config.redisPrefix } : {};
  app.log.info({
    url,
    pid: process.pid,
    instanceId: app.services.instanceId,
    dataDir: app.services.files.filesDir,
    spawner: app.services.runContext.spawner.name,
    queues: config.queues,
    backend: config.queueBackend,
    ...cluster,
    ...(config.ui && config.role !== 'worker' ? { dashboard: `${url}/ui/` } : {}),
  }, 'execd ready');
  const spawner = app.services.runContext.spawner.name;
  if (config.spawner === 'auto' && spawner !== 'native') {
    // npm ci builds the native spawner when python3, make and g++ are there (native/build.mjs); without it every run still works.
    app.log.warn({ spawner }, 'the native spawner is unavailable, so commands are spawned with child_process: slower, and no CPU/memory usage in results; install python3, make and g++, then run npm run native:build');
  }
  if (notDumpable !== 0) {
    app.log.warn({ errno: notDumpable }, 'the server stays dumpable (the native addon is not there to call prctl): a command run as the server\'s own user can read its /proc/<pid>/environ, tokens included; set EXECD_RUN_AS (docs/security.md)');
  }
  logRecovery(app, recovery);
  app.security.logStartup();
  // SIGHUP re-reads EXECD_TOKENS_FILE and EXECD_POLICY_FILE; a file that fails keeps the previous one.
  process.on('SIGHUP', () => app.security.reload());
  if (config.tokenGenerated) {
    // Printed once, on stderr, so that a log shipper reading stdout does not store it.
    process.stderr.write(`execd: no EXECD_TOKEN set; generated token for this run: ${config.tokens[0]}\n`);
    if (config.ui && config.role !== 'worker') process.stderr.write(`execd: the dashboard is at ${url}/ui/ (sign in with that token)\n`);
  }
}

/**
 * Let the log's pending write finish before process.exit(). pino's exit hook flushes synchronously,
 * and sonic-boom (4.2) retries a write to a closed pipe forever there when an asynchronous write is
 * still in flight (EPIPE: the log reader died); once the write has come back, the EPIPE has arrived
 * as an error event and pino stops writing instead. Bounded: a second at most.
 */
async function settleLog(app: FastifyInstance): Promise<void> {
  const stream = (app.log as unknown as Record<symbol, { _writing?: unknown } | undefined>)[pino.symbols.streamSym];
  const deadline = Date.now() + 1000;
  while (stream?._writing === true && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
}

/** One warning per crashed earlier instance, naming what was killed. */
function logRecovery(app: FastifyInstance, report: RecoveryReport): void {
  if (report.deadInstances.length === 0) return;
  for (const dead of report.deadInstances) {
    const orphans = report.orphans.filter((o) => o.instanceId === dead.instanceId);
    app.log.warn(
      {
        previousInstance: dead.instanceId,
        previousPid: dead.pid,
        previousStartedAt: dead.startedAt,
        killed: orphans.map((o) => ({ pid: o.pid, pgid: o.pgid, name: o.name })),
        filesRemoved: dead.filesDir !== undefined && report.filesRemoved.includes(dead.filesDir) ? dead.filesDir : null,
      },
      orphans.length > 0
        ? `recovery: killed ${orphans.length} process(es) a crashed earlier instance left running`
        : 'recovery: an earlier instance ended without shutting down; it left nothing running',
    );
  }
  app.metrics.recovered(report.orphans.length - report.survivors.length);
  if (report.survivors.length > 0) app.log.error({ pids: report.survivors }, 'recovery: processes survived SIGKILL');
}

void main();
