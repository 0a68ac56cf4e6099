import pino, { type Logger } from 'pino';
import type { Config } from './config.js';

/** The process logger: JSON lines on stdout, or human-readable with --log.format pretty. */
export function createLogger(log: Config['log']): Logger {
  if (log.format === 'pretty') {
    return pino({
      level: log.level,
      transport: { target: 'pino-pretty', options: { colorize: process.stdout.isTTY, translateTime: 'SYS:standard' } },
    });
  }
  return pino({ level: log.level, base: { name: 'docker-exporter' } });
}
