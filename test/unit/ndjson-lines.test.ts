import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readNdjson } from '../../src/docker/ndjson.js';

describe('readNdjson, unparsed lines', () => {
  it('hands over every non-blank line as sent, however chunked, without parsing one', async () => {
    const sent = ['{"read":"2026-01-01T00:00:00Z","id":"a"}', 'not json at all', '{"naïve":"☃ 😀"}', '{"last":true}'];
    const bytes = Buffer.from(`${sent[0]}\r\n\n  \n${sent[1]}\n${sent[2]}\n${sent[3]}`);
    const source = new PassThrough();
    const lines: string[] = [];
    const bad: string[] = [];
    const done = readNdjson(source, { onLine: (l) => lines.push(l), onBadRecord: (r) => bad.push(r) });
    for (let i = 0; i < bytes.length; i += 3) {
      source.write(bytes.subarray(i, i + 3));
      await new Promise((r) => setImmediate(r));
    }
    source.end();
    await done;
    // The malformed line is the reader's to judge: it arrives like any other.
    expect(lines).toEqual(sent);
    expect(bad).toEqual([]);
  });

  it('skips an oversized line and hands over the lines after it', async () => {
    const source = new PassThrough();
    const lines: string[] = [];
    const bad: string[] = [];
    const done = readNdjson(source, { onLine: (l) => lines.push(l), onBadRecord: (r) => bad.push(r) }, 64);
    source.write('{"a":1}\n');
    source.write('x'.repeat(200));
    source.write('x'.repeat(200) + '\n{"b":2}\n');
    source.end();
    await done;
    expect(lines).toEqual(['{"a":1}', '{"b":2}']);
    expect(bad).toEqual(['oversized']);
  });
});
