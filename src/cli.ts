#!/usr/bin/env node
import { createApp } from './app.js';
import { buildConfig, ConfigError, EarlyExit, type Config } from './config.js';
import { createLogger } from './logger.js';

/** Exit status for a bad flag, value or config file, as Prometheus exporters use it. */
const EXIT_USAGE = 2;
/** SIGTERM must end the process within 5 s even if something hangs. */
const STOP_DEADLINE_MS = 4000;

async function main(): Promise<void> {
  let config: Config;
  try {
    config = buildConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof EarlyExit) {
      process.stdout.write(err.output);
      process.exit(err.exitCode);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`docker-exporter: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    throw err;
  }

  const logger = createLogger(config.log);
  let app;
  try {
    app = createApp(config, logger);
    await app.start();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`docker-exporter: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    logger.fatal({ err: (err as Error).message }, 'cannot start');
    process.exit(1);
  }

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    setTimeout(() => {
      logger.warn('shutdown deadline passed; exiting');
      process.exit(0);
    }, STOP_DEADLINE_MS).unref();
    app.stop().then(
      () => process.exit(0),
      (err: Error) => {
        logger.error({ err: err.message }, 'error while stopping');
        process.exit(0);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Whatever the engine sends must never end the process; anything that slips through is logged.
  process.on('uncaughtException', (err) => logger.error({ err: err.message, stack: err.stack }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => logger.error({ err: (err as Error)?.message ?? String(err) }, 'unhandled rejection'));
}

void main();
