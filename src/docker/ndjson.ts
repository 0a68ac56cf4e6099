import type { Readable } from 'node:stream';

/**
 * The engine never sends a record near this size (a stats sample of a 256-CPU host is ~15 KiB); a
 * longer line is a broken or hostile record, not data.
 */
export const MAX_LINE_BYTES = 1024 * 1024;

/**
 * How much of one oversized line is read past and thrown away, as a multiple of the line bound,
 * before the stream is judged broken. An oversized record is skipped so that the stream goes on
 * (ending it made the events stream reconnect, be replayed the same record and end again: 3,000 log
 * lines in 25 minutes); a line that never ends is not a record, and reading it forever would cost
 * CPU for nothing.
 */
export const SKIP_LIMIT_FACTOR = 64;

const NEWLINE = 0x0a;
const CR = 0x0d;

export interface NdjsonHandlers {
  /** One parsed JSON value, with its raw line (the events stream needs exact integers from it). */
  onRecord(value: unknown, line: string): void;
  /** A line that is not JSON, or too long; the stream goes on after either. */
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
 * Reads newline-delimited JSON from an engine stream however its bytes are chunked. Lines are cut
 * on bytes and decoded whole, so a UTF-8 sequence split across chunks arrives intact. Resolves when
 * the stream ends, rejects when it fails. A malformed line is reported and skipped; so is a line
 * longer than `maxLineBytes`, whose bytes are dropped as they come (never held) up to the next
 * newline. Only a line still unfinished after SKIP_LIMIT_FACTOR × `maxLineBytes` ends the stream.
 *
 * Written here rather than with split2: split2 cannot skip a long line (it can only fail the
 * stream), and it re-scans the unfinished line on every chunk, so a long line cost the square of
 * its length; here each byte is looked at once (Buffer.indexOf).
 */
export function readNdjson(source: Readable, handlers: NdjsonHandlers, maxLineBytes?: number): Promise<void>;
export function readNdjson(source: Readable, handlers: NdjsonLineHandlers, maxLineBytes?: number): Promise<void>;
export function readNdjson(source: Readable, handlers: NdjsonHandlers | NdjsonLineHandlers, maxLineBytes = MAX_LINE_BYTES): Promise<void> {
  const skipLimit = SKIP_LIMIT_FACTOR * maxLineBytes;
  return new Promise((resolve, reject) => {
    /** The unfinished line's pieces, while it is within the bound. */
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    /** Bytes of an oversized line dropped so far; -1 while no line is being skipped. */
    let skipped = -1;
    let settled = false;

    const emit = (bytes: Buffer): void => {
      let end = bytes.length;
      if (end > 0 && bytes[end - 1] === CR) end--;
      const line = bytes.toString('utf8', 0, end);
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
    };
    const startSkipping = (dropped: number): void => {
      pending = [];
      pendingBytes = 0;
      skipped = dropped;
      handlers.onBadRecord('oversized', `line longer than ${maxLineBytes} bytes, skipped`);
    };
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      source.off('data', onData);
      pending = [];
      if (err) {
        source.destroy();
        reject(err);
      } else resolve();
    };
    const onData = (chunk: Buffer | string): void => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      let pos = 0;
      while (pos < buf.length && !settled) {
        const nl = buf.indexOf(NEWLINE, pos);
        const end = nl === -1 ? buf.length : nl;
        if (skipped >= 0) {
          skipped += end - pos;
          if (nl === -1 && skipped > skipLimit) {
            finish(new Error(`a line went on past ${skipLimit} bytes without ending: the stream is broken`));
            return;
          }
          if (nl !== -1) skipped = -1;
        } else if (pendingBytes + (end - pos) > maxLineBytes) {
          startSkipping(pendingBytes + end - pos);
          if (nl !== -1) skipped = -1;
        } else if (nl === -1) {
          // Copied: the chunk's memory may be a slice of a larger buffer the socket reuses.
          pending.push(Buffer.from(buf.subarray(pos)));
          pendingBytes += buf.length - pos;
        } else {
          const piece = buf.subarray(pos, nl);
          emit(pending.length === 0 ? piece : Buffer.concat([...pending, piece]));
          pending = [];
          pendingBytes = 0;
        }
        if (nl === -1) break;
        pos = nl + 1;
      }
    };
    const onEnd = (): void => {
      if (settled) return;
      if (skipped < 0 && pendingBytes > 0) emit(Buffer.concat(pending));
      finish();
    };
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', (err) => finish(err));
    // An aborted or closed response may never emit 'end'.
    source.on('close', () => setImmediate(() => finish()));
  });
}
