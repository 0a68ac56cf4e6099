import pino from 'pino';
import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { StatsSample } from '../../src/parse/stats.js';
import { CgroupfsSource } from '../../src/stats/cgroupfs.js';
import type { SourceDeps, StatsSink, Target } from '../../src/stats/source.js';
import { LoopHealth } from '../../src/loop-health.js';
import { buildConfig } from '../helpers/config.js';

const TREE = new URL('../fixtures/cgroup/v2-systemd/', import.meta.url).pathname;
const ID = '35f95d053f6256a15931ba759eaadd3d9b59d74aa47e730a1cd95832a717472e';

/** The v2-systemd fixture as a host's root, and a source over it with a sink that records. */
function rig(pid: number) {
  const registry = new Registry();
  const deps = {
    config: buildConfig(['--path.rootfs', TREE]),
    docker: { get: () => Promise.reject(new Error('no engine in this test')), stream: () => Promise.reject(new Error('no engine in this test')) },
    registry,
    logger: pino({ level: 'silent' }),
    health: new LoopHealth(),
  } as unknown as SourceDeps;
  const t: Target = { id: ID, startedAt: 1, pid, networkMode: 'bridge', cpuQuota: false };
  const samples: Array<StatsSample | undefined> = [];
  const sink: StatsSink = {
    targets: () => [t],
    follows: (x) => x === t,
    deliver: () => undefined,
    deliverSample: (_t, s) => void samples.push(s),
    bad: () => undefined,
  };
  const fallbacks = new Counter({ name: 'fallbacks', help: 'h', registers: [registry] });
  const source = new CgroupfsSource(deps, sink, fallbacks);
  sources.push(source);
  return { source, t, samples, fallbacks: async () => (await fallbacks.get()).values[0]?.value ?? 0 };
}

const sources: CgroupfsSource[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const s of sources.splice(0)) await s.stop();
});

describe('CgroupfsSource', () => {
  it('reads a container of the tree at each read, from its pid\'s /proc entry', async () => {
    const r = rig(1234);
    await r.source.read();
    await r.source.read();
    expect(r.samples).toHaveLength(2);
    expect(r.samples[1]?.cpuTotalSeconds).toBe(1);
    expect(r.samples[1]?.networks.map((n) => n.name)).toEqual(['eth0']);
    expect(await r.fallbacks()).toBe(0);
  });

  it('gives a container whose process is gone (no /proc entry) no sample, and the engine only if it is still unfound 5 s later', async () => {
    const r = rig(999_999);
    let now = 1_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => now);
    await r.source.read();
    now += 1000;
    await r.source.read();
    // As a container that exited just before the read: its die event is on its way.
    expect(r.samples).toEqual([]);
    expect(await r.fallbacks()).toBe(0);
    now += 5000;
    await r.source.read();
    expect(await r.fallbacks()).toBe(1);
  });

  it('starts the grace again for a new pid of the same target (a restart)', async () => {
    const r = rig(999_998);
    let now = 2_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => now);
    await r.source.read();
    now += 4000;
    r.t.pid = 999_997;
    await r.source.read();
    now += 4000;
    await r.source.read();
    expect(await r.fallbacks()).toBe(0);
    r.t.pid = 1234;
    await r.source.read();
    expect(r.samples).toHaveLength(1);
    expect(await r.fallbacks()).toBe(0);
  });
});

