#!/usr/bin/env node
import { createApp } from './app.js';
import { COLLECTORS } from './collectors/index.js';
import { buildConfig, type Config } from './config.js';
import { ConfigError, EarlyExit } from './errors.js';
import { createLogger } from './logger.js';
import { reloadWebConfigs } from './web/server.js';

/** Exit status for a bad flag, value or config file, as Prometheus exporters use it. */
const EXIT_USAGE = 2;
/** SIGTERM must end the process within 5 s even if something hangs. */
const STOP_DEADLINE_MS = 4000;

async function main(): Promise<void> {
  let config: Config;
  try {
    config = buildConfig(process.argv.slice(2), process.env, COLLECTORS);
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
  // SIGHUP re-reads --web.config.file (which is also re-read whenever it changes); it never ends the process.
  process.on('SIGHUP', () => {
    logger.info({ signal: 'SIGHUP', webConfigFile: config.web.configFile ?? null }, config.web.configFile ? 'reloading web config' : 'SIGHUP: no --web.config.file to reload');
    reloadWebConfigs();
  });
  let app;
  try {
    app = createApp(config, logger, COLLECTORS);
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
