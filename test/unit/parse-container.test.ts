import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseContainerInspect, parseContainerList, type ContainerInfo } from '../../src/parse/container.js';
import { PayloadError } from '../../src/parse/guards.js';

const DIR = new URL('../fixtures/inspect/', import.meta.url);
const load = (name: string): Record<string, any> => JSON.parse(fs.readFileSync(new URL(`${name}.json`, DIR), 'utf8'));
const parse = (name: string): ContainerInfo => parseContainerInspect(load(name));

const NO_LIMITS = { memory: 0, memoryReservation: 0, memorySwap: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0 };
const IMAGE_ID = 'sha256:a175a23584c047a8a050e299eadbeb452bacdbd0ddd531afec153d101be0a4bf';

// Recorded from Debian's dockerd 20.10 (API 1.41, cgroup v1) with `GET /containers/{id}/json`.
describe('parseContainerInspect on recorded payloads', () => {
  it('reads identity, image and labels', () => {
    const c = parse('no-healthcheck');
    expect(c).toMatchObject({
      id: 'c6f12160034a7f819fd904c2ca17c0ea981307df6d004e40fb271b6b27968a58',
      name: 'c3f-nohealth',
      image: 'docker-exporter-test/busybox:latest',
      imageId: IMAGE_ID,
      labels: { 'com.docker.compose.project': 'fixture', 'com.docker.compose.service': 'web', 'docker-exporter-test': '1' },
      state: 'running',
      health: 'none',
      failingStreak: 0,
      restartCount: 0,
      exitCode: 0,
      oomKilled: false,
      spec: NO_LIMITS,
    });
    expect(c.createdSeconds).toBeCloseTo(Date.parse('2026-11-28T01:23:04Z') / 1000 + 0.05921771, 6);
    expect(c.startedAtSeconds).toBeCloseTo(Date.parse('2026-11-28T01:23:05Z') / 1000 + 0.393913706, 6);
    expect(c.finishedAtSeconds).toBeUndefined();
  });

  it.each([
    ['healthy', 'healthy', 0],
    ['unhealthy', 'unhealthy', 16],
    ['starting', 'starting', 0],
    ['no-healthcheck', 'none', 0],
  ] as const)('health of %s: %s, failing streak %d', (name, health, streak) => {
    const c = parse(name);
    expect(c.health).toBe(health);
    expect(c.failingStreak).toBe(streak);
  });

  it('takes the state from State.Status: a restarting container is "restarting", though Running is true', () => {
    const raw = load('restarting');
    expect(raw.State.Running).toBe(true);
    expect(parse('restarting')).toMatchObject({ state: 'restarting', restartCount: 6, exitCode: 3 });
  });

  it('reads an exit code, an OOM kill, a pause and a never-started container', () => {
    expect(parse('exited-7')).toMatchObject({ state: 'exited', exitCode: 7, oomKilled: false });
    expect(parse('exited-7').finishedAtSeconds).toBeCloseTo(Date.parse('2026-11-28T01:23:08Z') / 1000 + 0.03360848, 6);
    expect(parse('oom-killed')).toMatchObject({ state: 'exited', exitCode: 137, oomKilled: true, spec: { ...NO_LIMITS, memory: 8388608, memorySwap: 8388608 } });
    expect(parse('paused').state).toBe('paused');
    const created = parse('created');
    expect(created.state).toBe('created');
    expect(created.startedAtSeconds).toBeUndefined();
    expect(created.finishedAtSeconds).toBeUndefined();
    expect(created.createdSeconds).toBeDefined();
  });

  it('reads the limits as set (--memory 64m --memory-reservation 32m --memory-swap 128m --cpu-shares 512 --cpu-quota 50000 --cpu-period 200000)', () => {
    expect(parse('limits').spec).toEqual({ memory: 67108864, memoryReservation: 33554432, memorySwap: 134217728, cpuQuota: 50000, cpuPeriod: 200000, cpuShares: 512 });
  });

  it('turns NanoCpus (--cpus 1.5) into the quota and period the engine applies', () => {
    expect(load('nanocpus').HostConfig).toMatchObject({ NanoCpus: 1500000000, CpuQuota: 0, CpuPeriod: 0 });
    expect(parse('nanocpus').spec).toEqual({ memory: 33554432, memoryReservation: 0, memorySwap: 67108864, cpuQuota: 150000, cpuPeriod: 100000, cpuShares: 0 });
  });
});

describe('parseContainerInspect on unusual payloads', () => {
  const base = load('no-healthcheck');
  const withState = (state: Record<string, unknown>) => ({ ...base, State: state });

  it('truncates NanoCpus as the engine does (integer division)', () => {
    // 0.0000155 CPUs: 15500 × 100000 / 1e9 = 1.55 → 1
    expect(parseContainerInspect({ ...base, HostConfig: { NanoCpus: 15500 } }).spec).toMatchObject({ cpuQuota: 1, cpuPeriod: 100000 });
    expect(parseContainerInspect({ ...base, HostConfig: { NanoCpus: 333333333 } }).spec).toMatchObject({ cpuQuota: 33333, cpuPeriod: 100000 });
  });

  it('derives the state from the flags on engines without State.Status', () => {
    expect(parseContainerInspect(withState({ Running: true, Restarting: true })).state).toBe('restarting');
    expect(parseContainerInspect(withState({ Running: true, Paused: true })).state).toBe('paused');
    expect(parseContainerInspect(withState({ Running: true })).state).toBe('running');
    expect(parseContainerInspect(withState({ Dead: true })).state).toBe('dead');
    expect(parseContainerInspect(withState({ StartedAt: '2024-01-01T00:00:00Z' })).state).toBe('exited');
    expect(parseContainerInspect(withState({ StartedAt: '0001-01-01T00:00:00Z' })).state).toBe('created');
  });

  it('reads an unknown health status, and a Health object without one, as none', () => {
    expect(parseContainerInspect(withState({ Status: 'running', Health: { Status: 'confused' } })).health).toBe('none');
    expect(parseContainerInspect(withState({ Status: 'running', Health: {} })).health).toBe('none');
  });

  it('takes absent or null members as Go\'s zero values', () => {
    const c = parseContainerInspect({ Id: base.Id, Name: '/bare', State: {}, Config: null, HostConfig: null, RestartCount: null });
    expect(c).toMatchObject({ id: base.Id, name: 'bare', image: '', imageId: '', labels: {}, state: 'created', health: 'none', restartCount: 0, exitCode: 0, oomKilled: false, spec: NO_LIMITS });
    expect(c.createdSeconds).toBeUndefined();
    expect(parseContainerInspect({ ...base, Config: { Image: 'x', Labels: null } }).labels).toEqual({});
  });

  it('throws PayloadError for a member of the wrong type rather than inventing a value for it', () => {
    const wrong: Array<Record<string, unknown>> = [
      { Name: 5 }, { Name: undefined }, { State: undefined }, { State: 'running' }, { State: [] }, { State: null },
      { State: { ...base.State, Status: 1 } }, { State: { ...base.State, ExitCode: '0' } }, { State: { ...base.State, OOMKilled: 'false' } },
      { State: { ...base.State, Health: 'healthy' } }, { State: { ...base.State, Health: { Status: 1 } } }, { State: { ...base.State, Health: { FailingStreak: '2' } } },
      { State: { ...base.State, StartedAt: 1700000000 } }, { Config: 'busybox' }, { Config: [] }, { Config: { ...base.Config, Image: 1 } },
      { Config: { ...base.Config, Labels: ['a=b'] } }, { HostConfig: [] }, { HostConfig: { Memory: '64m' } }, { HostConfig: { NanoCpus: true } },
      { RestartCount: '3' }, { Image: {} }, { Created: 0 },
    ];
    for (const over of wrong) expect(() => parseContainerInspect({ ...base, ...over }), JSON.stringify(over)).toThrow(PayloadError);
    expect(() => parseContainerInspect({ ...base, RestartCount: '3' })).toThrow('inspect RestartCount is of the wrong type (string)');
    expect(() => parseContainerInspect({ ...base, State: 'running' })).toThrow('inspect State is string, not an object');
  });

  it('drops labels whose values are not strings', () => {
    expect(parseContainerInspect({ ...base, Config: { Image: 'x', Labels: { a: 'b', n: 1, o: {} } } }).labels).toEqual({ a: 'b' });
  });

  it('throws PayloadError for a payload that does not identify a container', () => {
    for (const bad of [null, undefined, 'x', 7, [], [base], {}, { Id: 'short' }, { Id: 'Z'.repeat(64) }, { Id: 42 }, Buffer.from(JSON.stringify(base))]) {
      expect(() => parseContainerInspect(bad), JSON.stringify(bad)).toThrow(PayloadError);
    }
  });
});

describe('parseContainerList', () => {
  const id = (c: string): string => c.repeat(64);

  it('reads ids and names, a null Names as none', () => {
    expect(parseContainerList([])).toEqual([]);
    expect(parseContainerList([{ Id: id('a'), Names: ['/web/db', '/db'], Image: 'x' }, { Id: id('b'), Names: [] }, { Id: id('c'), Names: null }, { Id: id('d') }])).toEqual([
      { id: id('a'), names: ['/web/db', '/db'] },
      { id: id('b'), names: [] },
      { id: id('c'), names: [] },
      { id: id('d'), names: [] },
    ]);
  });

  it('throws PayloadError for anything but an array of entries with a 64-hex Id, one bad entry failing it all', () => {
    const good = { Id: id('a'), Names: ['/a'] };
    const bad: unknown[] = [
      null, undefined, 0, 'x', {}, { 0: good }, Buffer.from('[]'), [good, null], [good, 'junk'], [good, []], [good, {}],
      [good, { Id: 5 }], [good, { Id: 'short' }], [good, { Id: id('A') }], [good, { Id: '../../info' }], [good, { Id: id('b'), Names: '/b' }],
      [good, { Id: id('b'), Names: [1] }], [good, { Id: id('b'), Names: {} }],
    ];
    for (const list of bad) expect(() => parseContainerList(list), JSON.stringify(list)).toThrow(PayloadError);
    expect(() => parseContainerList([good, { Names: ['/b'] }])).toThrow('container list entry 1 has no 64-hex Id');
    expect(() => parseContainerList({ Id: id('a') })).toThrow('container list is object, not an array');
  });
});
