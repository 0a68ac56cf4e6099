import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readNdjson, SKIP_LIMIT_FACTOR } from '../../src/docker/ndjson.js';

/** Feeds `bytes` to the reader in the given chunk sizes and collects what it reads. */
async function read(bytes: Buffer, chunkSizes: number[], maxLine?: number) {
  const source = new PassThrough();
  const records: unknown[] = [];
  const bad: string[] = [];
  // The handler is attached at once: the reader may reject while chunks are still being fed.
  const done = readNdjson(source, { onRecord: (v) => records.push(v), onBadRecord: (reason) => bad.push(reason) }, maxLine).then(
    () => undefined,
    (err: Error) => err,
  );
  let offset = 0;
  let i = 0;
  while (offset < bytes.length && !source.destroyed) {
    const size = Math.max(1, chunkSizes[i++ % chunkSizes.length]!);
    source.write(bytes.subarray(offset, offset + size));
    offset += size;
    await new Promise((r) => setImmediate(r));
  }
  source.end();
  const error = await done;
  return { records, bad, error };
}

const RECORDS = [
  { status: 'start', id: 'a', name: 'plain' },
  { name: 'naïve ☃ unicode 😀 across chunk boundaries', nested: { list: [1, 2, 3] } },
  { big: 'x'.repeat(70_000) },
  {},
  { last: true },
];
const TEXT = RECORDS.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('readNdjson', () => {
  it.each([
    ['whole', [1 << 20]],
    ['one byte at a time', [1]],
    ['primes', [2, 3, 5, 7, 11, 13]],
    ['around line ends', [TEXT.indexOf('\n'), 1, 2]],
  ])('reads every record however the bytes are chunked (%s)', async (_name, sizes) => {
    const { records, bad, error } = await read(Buffer.from(TEXT), sizes);
    expect(error).toBeUndefined();
    expect(bad).toEqual([]);
    expect(records).toEqual(RECORDS);
  });

  it('reads records under many random chunkings', async () => {
    const bytes = Buffer.from(TEXT);
    for (let run = 0; run < 30; run++) {
      const sizes = Array.from({ length: 50 }, () => 1 + Math.floor(Math.random() * 4000));
      const { records } = await read(bytes, sizes);
      expect(records).toEqual(RECORDS);
    }
  });

  it('accepts CRLF, blank lines and a last record without a newline', async () => {
    const { records } = await read(Buffer.from('{"a":1}\r\n\n\n{"b":2}'), [3]);
    expect(records).toEqual([{ a: 1 }, { b: 2 }]);
  });

  it('skips a malformed line, reports it, and goes on', async () => {
    const { records, bad, error } = await read(Buffer.from('{"a":1}\n{"broken":\n{"b":2}\n'), [4]);
    expect(error).toBeUndefined();
    expect(records).toEqual([{ a: 1 }, { b: 2 }]);
    expect(bad).toEqual(['malformed']);
  });

  it('skips an oversized line, reports it once, and goes on with the records after it', async () => {
    // An events record over the bound used to end the stream; the reconnect replayed the same
    // record and ended again, forever.
    const { records, bad, error } = await read(Buffer.from(`{"a":1}\n{"x":"${'y'.repeat(5000)}"}\n{"b":2}\n`), [512], 1024);
    expect(error).toBeUndefined();
    expect(records).toEqual([{ a: 1 }, { b: 2 }]);
    expect(bad).toEqual(['oversized']);
  });

  it('skips an oversized line that arrives in one chunk with its neighbours', async () => {
    const { records, bad } = await read(Buffer.from(`{"a":1}\n{"x":"${'y'.repeat(5000)}"}\n{"b":2}\n`), [1 << 20], 1024);
    expect(records).toEqual([{ a: 1 }, { b: 2 }]);
    expect(bad).toEqual(['oversized']);
  });

  it('ends the stream on a line that goes on past the skip limit', async () => {
    const { records, bad, error } = await read(Buffer.from(`{"a":1}\n${'z'.repeat(1024 * SKIP_LIMIT_FACTOR + 4096)}`), [4096], 1024);
    expect(records).toEqual([{ a: 1 }]);
    expect(bad).toEqual(['oversized']);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain('without ending');
  });

  it('rejects when the source fails', async () => {
    const source = new PassThrough();
    const done = readNdjson(source, { onRecord: () => {}, onBadRecord: () => {} });
    source.write('{"a":');
    source.destroy(new Error('socket hang up'));
    await expect(done).rejects.toThrow('socket hang up');
  });
});
