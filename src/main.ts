import { isatty } from 'node:tty';
import closeWithGrace from 'close-with-grace';
import { buildApp, LOG_REDACT } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';

/** The only place that reads process.env, listens, and shuts down. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`execd: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  const pretty = isatty(1) && process.env.NO_COLOR === undefined;
  const app = await buildApp(config, {
    logger: {
      level: config.logLevel,
      redact: { paths: LOG_REDACT, censor: '[redacted]' },
      ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
    },
  }).catch((err: unknown) => {
    // A bad EXECD_TOKENS_FILE, EXECD_POLICY_FILE or EXECD_RUN_AS: one line, as for a bad setting.
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`execd: ${err.message}\n`);
    process.exit(2);
  });

  // The first log line says where execd listens.
  const url = await app.listen({ host: config.host, port: config.port, listenTextResolver: (address) => `execd listening on ${address}` });
  app.log.info({ url, pid: process.pid, spawner: app.services.runContext.spawner.name, queues: config.queues }, 'execd ready');
  app.security.logStartup();
  // SIGHUP re-reads EXECD_TOKENS_FILE and EXECD_POLICY_FILE; a file that fails keeps the previous one.
  process.on('SIGHUP', () => app.security.reload());
  if (config.tokenGenerated) {
    // Printed once, on stderr, so that a log shipper reading stdout does not store it.
    process.stderr.write(`execd: no EXECD_TOKEN set; generated token for this run: ${config.tokens[0]}\n`);
  }

  closeWithGrace({ delay: config.killGraceMs + 5000, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an error');
    else app.log.info({ signal }, 'shutting down');
    await app.close();
  });
}

void main();
