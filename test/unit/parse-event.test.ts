import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { baseAction, parseEvent } from '../../src/parse/event.js';

const LINES = fs
  .readFileSync(new URL('../fixtures/events/engine-20.10.ndjson', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l !== '');

describe('parseEvent on events recorded from Docker 20.10 (API 1.41)', () => {
  it('parses every record, keeping timeNano exact (it does not fit a double)', () => {
    expect(LINES.length).toBe(47);
    let inexactAsDouble = 0;
    for (const line of LINES) {
      const e = parseEvent(JSON.parse(line), line);
      expect(e, line).toBeDefined();
      const raw = /"timeNano":(\d+)/.exec(line)![1]!;
      expect(e!.timeNano.toString()).toBe(raw);
      if (BigInt(Number(raw)) !== BigInt(raw)) inexactAsDouble++;
    }
    // JSON.parse alone would have rounded these.
    expect(inexactAsDouble).toBeGreaterThan(40);
  });

  it('reads type, action, actor and attributes', () => {
    const health = LINES.find((l) => l.includes('"Action":"health_status: unhealthy"'))!;
    const e = parseEvent(JSON.parse(health), health)!;
    expect(e).toMatchObject({
      type: 'container',
      action: 'health_status: unhealthy',
      actorId: 'f7eb4e33f5b9dfcc55168c563632885ff912e7c1dc41affa6b87d1251ce473b3',
      attributes: { name: 'c3f-unhealthy', 'com.docker.compose.project': 'fixture', image: 'docker-exporter-test/busybox:latest' },
    });
    const volume = LINES.find((l) => l.includes('"Type":"volume"'))!;
    expect(parseEvent(JSON.parse(volume), volume)).toMatchObject({ type: 'volume', action: 'create', actorId: 'c3f-vol', attributes: { driver: 'local' } });
  });

  it('counts the recorded actions as docker events lists them, detail cut off', () => {
    const counts: Record<string, number> = {};
    for (const line of LINES) {
      const e = parseEvent(JSON.parse(line), line)!;
      const key = `${e.type} ${baseAction(e.action)}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    expect(counts).toEqual({
      'container create': 11,
      'container start': 15,
      'container die': 8,
      'container exec_create': 1,
      'container exec_start': 1,
      'container exec_die': 1,
      'container health_status': 2,
      'container oom': 1,
      'container pause': 1,
      'image tag': 1,
      'image untag': 1,
      'network create': 1,
      'network destroy': 1,
      'volume create': 1,
      'volume destroy': 1,
    });
  });

  it('takes timeNano from the raw line even when an attribute holds the same text', () => {
    const line = '{"Type":"container","Action":"start","Actor":{"ID":"x","Attributes":{"timeNano":"5","note":"\\"timeNano\\":7"}},"time":1795828981,"timeNano":1795828981213451352}';
    expect(parseEvent(JSON.parse(line), line)!.timeNano).toBe(1795828981213451352n);
  });

  it('falls back to time (seconds) and then to 0 when timeNano is missing', () => {
    expect(parseEvent({ Type: 'image', Action: 'pull', time: 1700000000 })!.timeNano).toBe(1_700_000_000_000_000_000n);
    expect(parseEvent({ Type: 'image', Action: 'pull' })!.timeNano).toBe(0n);
  });

  it('reads the pre-1.22 shape (status, id, from) as a container event', () => {
    expect(parseEvent({ status: 'die', id: 'abc', from: 'busybox', time: 1 })).toMatchObject({ type: 'container', action: 'die', actorId: 'abc' });
  });

  it('returns undefined for records that are not events', () => {
    for (const bad of [null, 42, 'x', [], {}, { Type: 'container' }, { Action: 'start' }, { Type: 'container', Action: '' }, { Type: 7, Action: 'start' }]) {
      expect(parseEvent(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });

  it('survives wrong types in the optional parts', () => {
    expect(parseEvent({ Type: 'container', Action: 'start', Actor: 'nope', timeNano: 'soon' })).toEqual({
      type: 'container',
      action: 'start',
      actorId: '',
      attributes: {},
      timeNano: 0n,
    });
    expect(parseEvent({ Type: 'container', Action: 'start', Actor: { ID: 5, Attributes: { a: 1, b: 'x' } } })!.attributes).toEqual({ b: 'x' });
  });
});

describe('baseAction', () => {
  it.each([
    ['health_status: healthy', 'health_status'],
    ['health_status: unhealthy', 'health_status'],
    ['exec_start: sh -c echo a: b', 'exec_start'],
    ['exec_create: /bin/sh -c true', 'exec_create'],
    ['exec_die', 'exec_die'],
    ['start', 'start'],
  ])('%s → %s', (action, base) => {
    expect(baseAction(action)).toBe(base);
  });
});
