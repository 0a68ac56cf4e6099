import type { Readable } from 'node:stream';
import split2 from 'split2';

/**
 * The engine never sends a record near this size (a stats sample of a 256-CPU host is ~15 KiB); a
 * longer line is a broken stream, not data. Kept small because split2 re-scans the unfinished line
 * on every chunk: the cost of an endless line grows with the square of this bound.
 */
export const MAX_LINE_BYTES = 1024 * 1024;

export interface NdjsonHandlers {
  /** One parsed JSON value, with its raw line (the events stream needs exact integers from it). */
  onRecord(value: unknown, line: string): void;
  /** A line that is not JSON, or too long; the stream goes on after a malformed line. */
  onBadRecord(reason: 'malformed' | 'oversized', sample: string): void;
}

/**
 * Handlers that take each line unparsed: for a stream of which only the latest record is ever used
 * (stats: a record a second, read once per scrape), parsing every line would be most of the work.
 * Whoever reads a line parses it, and counts it as malformed if it is not JSON.
 */
export interface NdjsonLineHandlers {
  /** One non-blank line, as the engine sent it (CR of a CRLF removed). */
  onLine(line: string): void;
  onBadRecord(reason: 'oversized', sample: string): void;
}

/**
 * Reads newline-delimited JSON from an engine stream however its bytes are chunked (split2 keeps
 * partial lines and split UTF-8 sequences across chunks). Resolves when the stream ends, rejects
 * when it fails; a malformed line is reported and skipped, an oversized one ends the stream (there
 * is no telling where the next record starts).
 */
export function readNdjson(source: Readable, handlers: NdjsonHandlers, maxLineBytes?: number): Promise<void>;
export function readNdjson(source: Readable, handlers: NdjsonLineHandlers, maxLineBytes?: number): Promise<void>;
export function readNdjson(source: Readable, handlers: NdjsonHandlers | NdjsonLineHandlers, maxLineBytes = MAX_LINE_BYTES): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = split2({ maxLength: maxLineBytes });
    let settled = false;
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      source.unpipe(lines);
      // Chunks already handed to split2 would raise the same error again with nobody left to hear it.
      lines.removeAllListeners('data');
      lines.on('error', () => {});
      lines.destroy();
      if (err) {
        source.destroy();
        reject(err);
      } else resolve();
    };
    lines.on('data', (line: string) => {
      if (line.trim() === '') return;
      if ('onLine' in handlers) {
        handlers.onLine(line);
        return;
      }
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        handlers.onBadRecord('malformed', line.slice(0, 200));
        return;
      }
      handlers.onRecord(value, line);
    });
    lines.on('error', (err: Error) => {
      if (/maximum buffer/i.test(err.message)) {
        handlers.onBadRecord('oversized', `line longer than ${maxLineBytes} bytes`);
      }
      finish(err);
    });
    lines.on('end', () => finish());
    source.on('error', (err) => finish(err));
    // An aborted or closed response may never emit 'end'.
    source.on('close', () => setImmediate(() => finish()));
    source.pipe(lines);
  });
}
