import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseStats, type StatsSample } from '../../src/parse/stats.js';
import {
  detectCgroupLayout,
  detectCgroupLayoutSync,
  FdBudget,
  FileCache,
  locateCgroup,
  pathExists,
  readCgroupFile,
  readCgroupFileInPool,
  readCgroupSample,
  type CgroupLayout,
  type CgroupLocation,
  type Exists,
  type ReadFile,
} from '../../src/stats/cgroup-files.js';

const DIR = new URL('../fixtures/cgroup/', import.meta.url).pathname;
const STATS = new URL('../fixtures/stats/', import.meta.url).pathname;
const TREES = fs
  .readdirSync(DIR, { withFileTypes: true })
  .filter((e) => e.isDirectory() && fs.existsSync(path.join(DIR, e.name, 'cases.json')))
  .map((e) => e.name)
  .sort();

/** One process of a fixture tree to locate and read (its cases.json). */
interface Case {
  name: string;
  pid: number;
  id?: string;
  netDev: boolean;
  /** The fixed clock for `read`, ms. */
  now: number;
}

/** The fields only the cgroupfs source has; everything else is what parseStats makes of the engine's payload. */
const CGROUPFS_ONLY = [
  'memorySwapBytes',
  'pressureCpuWaitingSeconds',
  'pressureCpuStalledSeconds',
  'pressureMemoryWaitingSeconds',
  'pressureMemoryStalledSeconds',
  'pressureIoWaitingSeconds',
  'pressureIoStalledSeconds',
] as const;

function cases(tree: string): Case[] {
  return JSON.parse(fs.readFileSync(path.join(DIR, tree, 'cases.json'), 'utf8'));
}

function root(tree: string): string {
  return path.join(DIR, tree, 'sys/fs/cgroup');
}

const exists: Exists = pathExists;

async function layoutOf(tree: string): Promise<CgroupLayout> {
  const layout = await detectCgroupLayout(root(tree), exists);
  if (!layout) throw new Error(`${tree}: no cgroup layout`);
  return layout;
}

async function locate(tree: string, c: Case) {
  const text = fs.readFileSync(path.join(DIR, tree, 'proc', String(c.pid), 'cgroup'), 'utf8');
  return locateCgroup(await layoutOf(tree), text, exists, c.id);
}

async function sampleOf(tree: string, name = 'container', read: ReadFile = readCgroupFile): Promise<{ location: CgroupLocation; sample: StatsSample }> {
  const c = cases(tree).find((x) => x.name === name)!;
  const located = await locate(tree, c);
  if (!located.found) throw new Error(`${tree}/${name}: ${located.reason}`);
  const sample = await readCgroupSample(located.location, read, { netDev: c.netDev ? path.join(DIR, tree, 'proc', String(c.pid), 'net/dev') : undefined, now: () => c.now });
  if (!sample) throw new Error(`${tree}/${name}: gone`);
  return { location: located.location, sample };
}

function engine(file: string): StatsSample {
  const s = parseStats(JSON.parse(fs.readFileSync(file, 'utf8')));
  if (!s) throw new Error(`${file}: no sample`);
  return s;
}

/** Paths inside the fixture tree, as the golden files hold them. */
function relative(tree: string, value: unknown): unknown {
  return JSON.parse(JSON.stringify(value).replaceAll(path.join(DIR, tree), '<tree>'));
}

/** `got` with only the engine's fields, the way toEqual compares with parseStats' sample. */
function engineFields(got: StatsSample): Partial<StatsSample> {
  const out: Partial<StatsSample> = { ...got };
  for (const k of CGROUPFS_ONLY) delete out[k];
  return out;
}

describe('cgroup fixture trees: golden outputs', () => {
  it('has every layout the source must handle', () => {
    expect(TREES).toEqual(['podman-v2', 'torn', 'v1-cgroupfs', 'v1-systemd', 'v2-cgroupfs', 'v2-rootless', 'v2-systemd', 'vanished']);
  });

  // UPDATE_GOLDEN=1 rewrites the .golden.json files; review the diff before committing it.
  for (const tree of TREES) {
    it(`${tree} matches ${tree}.golden.json`, async () => {
      const layout = await layoutOf(tree);
      const out: Record<string, unknown> = { layout: relative(tree, layout) };
      for (const c of cases(tree)) {
        const located = await locate(tree, c);
        if (!located.found) {
          out[c.name] = relative(tree, located);
          continue;
        }
        const netDev = c.netDev ? path.join(DIR, tree, 'proc', String(c.pid), 'net/dev') : undefined;
        const sample = await readCgroupSample(located.location, readCgroupFile, { netDev, now: () => c.now });
        out[c.name] = relative(tree, { ...located, sample });
      }
      const got = JSON.parse(JSON.stringify(out));
      const goldenPath = path.join(DIR, `${tree}.golden.json`);
      if (process.env.UPDATE_GOLDEN === '1') fs.writeFileSync(goldenPath, `${JSON.stringify(got, null, 2)}\n`);
      expect(got).toEqual(JSON.parse(fs.readFileSync(goldenPath, 'utf8')));
    });
  }
});

describe('the recorded cgroup v1 container against the engine’s one-shot stats of the same moment', () => {
  it('gives exactly parseStats’ sample of the engine’s payload (the container was paused: nothing moved)', async () => {
    const { sample } = await sampleOf('v1-cgroupfs');
    const fromEngine = engine(path.join(DIR, 'v1-cgroupfs/engine-stats.json'));
    expect(Math.abs(sample.read - fromEngine.read)).toBeLessThan(0.001);
    expect({ ...engineFields(sample), read: 0 }).toEqual({ ...fromEngine, read: 0 });
    // Field by field, so a failure names the field.
    for (const [k, v] of Object.entries(fromEngine)) if (k !== 'read') expect((sample as unknown as Record<string, unknown>)[k], k).toEqual(v);
    expect(sample.cpuTotalSeconds).toBe(3.074867321);
    expect(sample.cpuUserSeconds).toBe(2.86);
    expect(sample.cfsThrottledPeriods).toBe(61);
    expect(sample.memoryWorkingSetBytes).toBe(29409280 - 7340032);
    expect(sample.threadsMax).toBe(100);
    expect(sample.networks.map((n) => n.name)).toEqual(['eth0']);
  });

  it('adds what the engine does not carry: swap (no swap in use) and PSI from the hybrid host’s unified hierarchy', async () => {
    const { sample, location } = await sampleOf('v1-cgroupfs');
    expect(location.dirs.unified).toMatch(/\/unified\/docker\/b6456aaf/);
    expect(sample.memorySwapBytes).toBe(0);
    expect(sample.pressureCpuWaitingSeconds).toBe(2.80914);
    expect(sample.pressureCpuStalledSeconds).toBe(2.737706);
    expect(sample.pressureIoWaitingSeconds).toBe(0);
  });
});

describe('synthesized trees against parseStats of the payloads they were made from', () => {
  it('v1-systemd (v1-busy.json, the blkio of v1-blkio.json): CFQ figures win over the throttle ones, as in containerd', async () => {
    const { sample, location } = await sampleOf('v1-systemd');
    const busy = engine(path.join(STATS, 'v1-busy.json'));
    expect({ ...engineFields(sample), read: 0, blkio: [] }).toEqual({ ...busy, read: 0 });
    expect(sample.blkio).toEqual(engine(path.join(STATS, 'v1-blkio.json')).blkio);
    expect(Math.abs(sample.read - busy.read)).toBeLessThan(0.001);
    // No swap accounting (no memsw files) and no unified hierarchy: those fields are absent, not 0.
    expect(location.files.memorySwap).toBeUndefined();
    for (const k of CGROUPFS_ONLY) expect(sample[k], k).toBeUndefined();
    expect(location.dirs.cpu).toBe(location.dirs.cpuacct);
    expect(location.dirs.cpuacct).toMatch(/\/cpu,cpuacct\/system\.slice\/docker-e272018e[0-9a-f]+\.scope$/);
  });

  it('v2-cgroupfs (v2-recorded.json, recorded by the OpenTelemetry Collector): equal, plus the read/write counts of io.stat', async () => {
    const { sample } = await sampleOf('v2-cgroupfs');
    const recorded = engine(path.join(STATS, 'v2-recorded.json'));
    const withoutCounts = sample.blkio.map(({ device, readBytes, writeBytes }) => ({ device, readBytes, writeBytes }));
    expect({ ...engineFields(sample), blkio: withoutCounts, read: 0 }).toEqual({ ...recorded, read: 0 });
    expect(sample.blkio[0]).toEqual({ device: '7:2', readBytes: 1998848, writeBytes: 0, reads: 38, writes: 0 });
    // No memory.peak (before Linux 5.19) and no PSI: left out, as the engine leaves max usage out on v2.
    expect(sample.memoryMaxUsageBytes).toBeUndefined();
    expect(sample.pressureCpuWaitingSeconds).toBeUndefined();
    expect(sample.memorySwapBytes).toBe(0);
    expect(sample.malformed).toBe(0);
  });

  it('v2-rootless (v2-docs.json): CPU from cpu.stat’s core keys although the cpu controller is not delegated', async () => {
    const { sample, location } = await sampleOf('v2-rootless');
    const docs = engine(path.join(STATS, 'v2-docs.json'));
    expect(location.files.ioStat).toBeUndefined();
    expect(sample.cpuTotalSeconds).toBe(docs.cpuTotalSeconds);
    expect(sample.cpuUserSeconds).toBe(docs.cpuUserSeconds);
    expect(sample.cpuSystemSeconds).toBe(docs.cpuSystemSeconds);
    // Without the cpu controller there is no throttling; without io, no block I/O.
    const { cfsPeriods, cfsThrottledPeriods, cfsThrottledSeconds, blkio, memoryMaxUsageBytes, ...rest } = engineFields(sample);
    expect([cfsPeriods, cfsThrottledPeriods, cfsThrottledSeconds, blkio]).toEqual([undefined, undefined, undefined, []]);
    const { cfsPeriods: _p, cfsThrottledPeriods: _tp, cfsThrottledSeconds: _ts, blkio: _b, ...docsRest } = docs;
    expect({ ...rest, read: 0 }).toEqual({ ...docsRest, read: 0 });
    // memory.peak (Linux 5.19+) as max usage, which the engine does not report on v2 (runc and cAdvisor do).
    expect(memoryMaxUsageBytes).toBe(15073280);
    expect(sample.pressureCpuStalledSeconds).toBeUndefined();
    expect(sample.pressureMemoryStalledSeconds).toBe(0.000025);
  });
});

describe('locateCgroup on each layout', () => {
  it('v2 systemd driver: cuts the path of a process in init.scope back to the container’s scope', async () => {
    const c = cases('v2-systemd');
    const withId = await locate('v2-systemd', c[0]!);
    expect(withId.found && withId.location.dirs.unified).toMatch(/\/system\.slice\/docker-35f95d05[0-9a-f]+\.scope$/);
    const asIs = await locate('v2-systemd', c[1]!);
    expect(asIs.found && asIs.location.dirs.unified).toMatch(/\.scope\/init\.scope$/);
  });

  it('v2 systemd driver: the fallback tunnels of the namespace and lo are not the engine’s interfaces', async () => {
    const { sample } = await sampleOf('v2-systemd');
    expect(sample.networks.map((n) => n.name)).toEqual(['eth0']);
    expect(sample.memoryMaxUsageBytes).toBe(8053063680);
    expect(sample.memorySwapBytes).toBe(1310720);
    expect(sample.threadsMax).toBeUndefined();
    expect(sample.cfsThrottledSeconds).toBe(0.05);
  });

  it('Podman: the container’s libpod scope (above crun’s `container` sub-cgroup), rootful and rootless; never conmon’s scope', async () => {
    const [rootful, conmon, rootless] = cases('podman-v2');
    const a = await locate('podman-v2', rootful!);
    expect(a.found && a.location.dirs.unified).toMatch(/\/machine\.slice\/libpod-4675a9ec[0-9a-f]+\.scope$/);
    const b = await locate('podman-v2', conmon!);
    expect(b).toEqual({ found: false, reason: expect.stringContaining('does not name container 4675a9ec2d20') });
    const c = await locate('podman-v2', rootless!);
    expect(c.found && c.location.dirs.unified).toMatch(/\/user@1000\.service\/user\.slice\/libpod-56dfa3bc[0-9a-f]+\.scope$/);
  });

  it('v1 with cpu,cpuacct co-mounted and no per-controller symlinks: found under the list’s name', async () => {
    const { dirs, files } = await locatedIn(
      ['/r/cpu,cpuacct/docker/x', '/r/cpu,cpuacct/docker/x/cpuacct.usage', '/r/cpu,cpuacct/docker/x/cpu.stat', '/r/memory/docker/x', '/r/memory/docker/x/memory.stat'],
      '4:memory:/docker/x\n2:cpu,cpuacct:/docker/x\n',
    );
    expect(dirs).toEqual({ cpuacct: '/r/cpu,cpuacct/docker/x', cpu: '/r/cpu,cpuacct/docker/x', memory: '/r/memory/docker/x' });
    expect(files).toEqual({ cpuUsage: '/r/cpu,cpuacct/docker/x/cpuacct.usage', cpuStat: '/r/cpu,cpuacct/docker/x/cpu.stat', memoryStat: '/r/memory/docker/x/memory.stat' });
  });

  it('tells the layouts apart: v2, v1, hybrid, nothing', async () => {
    expect(await detectCgroupLayout('/r/', fakeExists(['/r/cgroup.controllers']))).toEqual({ version: 2, root: '/r' });
    expect(await detectCgroupLayout('/r', fakeExists(['/r/memory']))).toEqual({ version: 1, root: '/r' });
    expect(await detectCgroupLayout('/r', fakeExists(['/r/cpu,cpuacct', '/r/unified/cgroup.controllers']))).toEqual({ version: 1, root: '/r', unified: '/r/unified' });
    expect(await detectCgroupLayout('/r', fakeExists(['/r/unified/cgroup.controllers']))).toBeUndefined();
    expect(await detectCgroupLayout(path.join(DIR, 'nowhere'), exists)).toBeUndefined();
  });

  it('tells them apart alike with a synchronous exists (the collector\'s choice for auto at start-up)', async () => {
    const sets = [['/r/cgroup.controllers'], ['/r/memory'], ['/r/cpuacct'], ['/r/cpu,cpuacct', '/r/unified/cgroup.controllers'], ['/r/unified/cgroup.controllers'], []];
    for (const paths of sets) {
      const all = new Set(paths);
      expect(detectCgroupLayoutSync('/r/', (p) => all.has(p)), paths.join(' ')).toEqual(await detectCgroupLayout('/r/', fakeExists(paths)));
    }
    for (const tree of TREES) expect(detectCgroupLayoutSync(root(tree), fs.existsSync), tree).toEqual(await layoutOf(tree));
  });

  it('finds nothing rather than a wrong directory', async () => {
    const v2: CgroupLayout = { version: 2, root: '/r' };
    const ok = fakeExists(['/r/docker/x/cpu.stat', '/r/system.slice/docker-x.scope/cpu.stat']);
    const reason = async (text: string, id?: string, layout: CgroupLayout = v2, e: Exists = ok) => {
      const r = await locateCgroup(layout, text, e, id);
      return r.found ? 'found' : r.reason;
    };
    expect(await reason('0::/docker/x\n')).toBe('found');
    expect(await reason('0::/../../docker/x\n')).toMatch(/relative to another cgroup namespace/);
    expect(await reason('0::/docker/../docker/x\n')).toMatch(/relative to another cgroup namespace/);
    expect(await reason('0::/docker/x (deleted)\n')).toMatch(/removed/);
    expect(await reason('0::/\n')).toMatch(/root cgroup/);
    expect(await reason('0::/docker//x\n')).toMatch(/unusable/);
    expect(await reason('0::/docker/y\n')).toMatch(/no cgroup directory \/r\/docker\/y/);
    expect(await reason('0::/docker/x\n', 'y'.repeat(64))).toMatch(/does not name container yyyyyyyyyyyy/);
    expect(await reason('0::/system.slice/docker-x.scope\n', 'x')).toBe('found');
    expect(await reason('0::/system.slice/docker-conmon-x.scope\n', 'x')).toMatch(/does not name/);
    expect(await reason('0::/system.slice/docker-x.scope.d\n', 'x')).toMatch(/does not name/);
    expect(await reason('5:memory:/docker/x\n')).toMatch(/no cgroup v2 line/);
    expect(await reason('garbage')).toMatch(/no usable line/);
    const v1: CgroupLayout = { version: 1, root: '/r' };
    expect(await reason('4:memory:/docker/x\n', undefined, v1, fakeExists(['/r/memory/docker/x']))).toMatch(/no cpuacct line/);
    expect(await reason('2:cpuacct:/docker/x\n', undefined, v1, fakeExists([]))).toMatch(/no cgroup directory \/r\/cpuacct\/docker\/x/);
    expect(await reason('2:cpuacct:/../docker/x\n', undefined, v1, fakeExists([]))).toMatch(/another cgroup namespace/);
  });

  it('vanished: a container removed after its pid was read is not found', async () => {
    const r = await locate('vanished', cases('vanished')[0]!);
    expect(r).toEqual({ found: false, reason: expect.stringMatching(/^no cgroup directory .*\/system\.slice\/docker-[0-9a-f]{64}\.scope$/) });
  });
});

describe('readCgroupSample', () => {
  it('is "gone" (null, no error) when a file went away between locating and reading', async () => {
    const c = cases('v2-systemd')[0]!;
    const located = await locate('v2-systemd', c);
    if (!located.found) throw new Error(located.reason);
    const netDev = path.join(DIR, 'v2-systemd/proc/1234/net/dev');
    // Every path of the container as the vanished tree has it: nothing there.
    const elsewhere: ReadFile = (p) => readCgroupFile(p.replace('/v2-systemd/', '/vanished/'));
    expect(await readCgroupSample(located.location, elsewhere, { netDev })).toBeNull();
    for (const missing of [located.location.files.memoryStat!, netDev]) {
      const oneGone: ReadFile = (p) => (p === missing ? Promise.resolve(undefined) : readCgroupFile(p));
      expect(await readCgroupSample(located.location, oneGone, { netDev }), missing).toBeNull();
    }
  });

  it('reads every listed file once, all at once, and nothing else', async () => {
    const { location } = await sampleOf('v1-cgroupfs');
    const started: string[] = [];
    let settled = 0;
    let startedBeforeAnySettled = 0;
    const counting: ReadFile = async (p) => {
      started.push(p);
      if (settled === 0) startedBeforeAnySettled++;
      const text = await readCgroupFileInPool(p);
      settled++;
      return text;
    };
    const netDev = path.join(DIR, 'v1-cgroupfs/proc/29366/net/dev');
    const sample = await readCgroupSample(location, counting, { netDev, now: () => 0 });
    expect(sample).not.toBeNull();
    const listed = [...Object.values(location.files), netDev].sort();
    expect([...started].sort()).toEqual(listed);
    expect(listed).toHaveLength(15);
    expect(startedBeforeAnySettled).toBe(listed.length);
  });

  it('the threadpool reader gives the same sample', async () => {
    const a = await sampleOf('v2-systemd', 'container', readCgroupFile);
    const b = await sampleOf('v2-systemd', 'container', readCgroupFileInPool);
    expect(b.sample).toEqual(a.sample);
  });

  it('leaves out and counts the fields of files cut short or garbled (torn tree), and keeps the rest', async () => {
    const { sample } = await sampleOf('torn');
    const whole = (await sampleOf('v1-cgroupfs')).sample;
    // memory.stat cut inside total_inactive_file: it and the keys after it (total_active_file …) are
    // lost; the working set needs it, so it is left out rather than shown as the whole usage.
    expect(sample.memoryWorkingSetBytes).toBeUndefined();
    expect(sample.memoryUsageBytes).toBe(whole.memoryUsageBytes);
    expect(sample.memoryRssBytes).toBe(whole.memoryRssBytes);
    expect(sample.pgfault).toBe(whole.pgfault);
    // cpu.stat with a word for nr_throttled and a binary line: only that value is lost.
    expect(sample.cfsPeriods).toBe(65);
    expect(sample.cfsThrottledPeriods).toBeUndefined();
    expect(sample.cfsThrottledSeconds).toBe(whole.cfsThrottledSeconds);
    // io.pressure cut inside its full line; net/dev cut inside eth0's line.
    expect(sample.pressureIoWaitingSeconds).toBe(0);
    expect(sample.pressureIoStalledSeconds).toBeUndefined();
    expect(sample.networks).toEqual([]);
    // A whole cpu.pressure beside them is read as it is.
    expect(sample.pressureCpuWaitingSeconds).toBe(whole.pressureCpuWaitingSeconds);
    // total_inactive_file, nr_throttled, io.pressure's partial line, net/dev's partial line.
    expect(sample.malformed).toBe(4);
    expect(sample.cpuTotalSeconds).toBe(whole.cpuTotalSeconds);
  });

  it('leaves PSI out when the kernel refuses to read it (psi=0 before Linux 5.19: EOPNOTSUPP), and rejects on other errors', async () => {
    const { location } = await sampleOf('v2-systemd');
    const refusing = (code: string): ReadFile => (p) => (p.endsWith('.pressure') ? Promise.reject(Object.assign(new Error(code), { code })) : readCgroupFile(p));
    const s = await readCgroupSample(location, refusing('EOPNOTSUPP'));
    expect(s?.pressureCpuWaitingSeconds).toBeUndefined();
    expect(s?.pressureIoStalledSeconds).toBeUndefined();
    expect(s?.cpuTotalSeconds).toBe(1);
    expect(s?.malformed).toBe(0);
    await expect(readCgroupSample(location, refusing('EACCES'))).rejects.toThrow('EACCES');
    const denied: ReadFile = (p) => (p.endsWith('memory.stat') ? Promise.reject(Object.assign(new Error('EACCES'), { code: 'EACCES' })) : readCgroupFile(p));
    await expect(readCgroupSample(location, denied)).rejects.toThrow('EACCES');
  });

  it('does not read v1 cpu.stat (throttling only) when throttling is not wanted, and reads v2\'s (CPU usage) regardless', async () => {
    const v1 = (await sampleOf('v1-cgroupfs')).location;
    const read: string[] = [];
    const counting: ReadFile = (p) => {
      read.push(p);
      return readCgroupFile(p);
    };
    const s1 = await readCgroupSample(v1, counting, { throttling: false });
    expect(read).not.toContain(v1.files.cpuStat);
    expect(read).toHaveLength(Object.keys(v1.files).length - 1);
    expect(s1?.cfsPeriods).toBeUndefined();
    expect(s1?.cpuTotalSeconds).toBe((await sampleOf('v1-cgroupfs')).sample.cpuTotalSeconds);
    const v2 = (await sampleOf('v2-systemd')).location;
    read.length = 0;
    const s2 = await readCgroupSample(v2, counting, { throttling: false });
    expect(read).toContain(v2.files.cpuStat);
    expect(s2?.cpuTotalSeconds).toBe(1);
  });

  it('takes the time of the sample from the clock after reading', async () => {
    const { location } = await sampleOf('v2-systemd');
    const before = Date.now() / 1000;
    const s = await readCgroupSample(location, readCgroupFile);
    expect(s!.read).toBeGreaterThanOrEqual(before);
    expect(s!.read).toBeLessThanOrEqual(Date.now() / 1000);
  });

  it('omits a zero or unlimited pids.max, as parseStats omits the engine’s 0 and MaxUint64', async () => {
    const loc: CgroupLocation = { version: 2, dirs: {}, files: { pidsCurrent: '/c', pidsMax: '/m' } };
    for (const [max, want] of [['max\n', undefined], ['0\n', undefined], ['18446744073709551615\n', undefined], ['4096\n', 4096]] as const) {
      const s = await readCgroupSample(loc, (p) => Promise.resolve(p === '/c' ? '3\n' : max));
      expect(s?.threads).toBe(3);
      expect(s?.threadsMax, max).toBe(want);
    }
  });

  it('floors v1 swap at 0 (memsw and usage are read a moment apart) and never gives a working set above usage', async () => {
    const loc: CgroupLocation = { version: 1, dirs: {}, files: { memoryUsage: '/u', memorySwap: '/s', memoryStat: '/st' } };
    const texts: Record<string, string> = { '/u': '1000\n', '/s': '900\n', '/st': 'total_inactive_file 4000\n' };
    const s = await readCgroupSample(loc, (p) => Promise.resolve(texts[p]));
    expect(s?.memorySwapBytes).toBe(0);
    expect(s?.memoryWorkingSetBytes).toBe(0);
    expect(s?.memoryUsageBytes).toBe(1000);
  });
});

describe('FileCache (the files of one container kept open between scrapes)', () => {
  it('gives the same sample as readCgroupFile for every tree, twice over the same open files', async () => {
    for (const tree of TREES) {
      for (const c of cases(tree)) {
        const located = await locate(tree, c);
        if (!located.found) continue;
        const netDev = c.netDev ? path.join(DIR, tree, 'proc', String(c.pid), 'net/dev') : undefined;
        const want = await readCgroupSample(located.location, readCgroupFile, { netDev, now: () => c.now });
        const cache = new FileCache(new FdBudget(100), root(tree));
        for (let i = 0; i < 2; i++) expect(await readCgroupSample(located.location, cache.read, { netDev, now: () => c.now }), `${tree}/${c.name}`).toEqual(want);
        // Every cgroup file stays open; net/dev (outside the cgroup root) is opened for each read.
        expect(cache.openFiles, `${tree}/${c.name}`).toBe(Object.keys(located.location.files).length);
        cache.close();
        expect(cache.openFiles).toBe(0);
      }
    }
  });

  it('keeps the container\'s net/dev open too when told to (keepAlso), and nothing else outside the root', async () => {
    const c = cases('v1-cgroupfs')[0]!;
    const located = await locate('v1-cgroupfs', c);
    if (!located.found) throw new Error(located.reason);
    const netDev = path.join(DIR, 'v1-cgroupfs/proc', String(c.pid), 'net/dev');
    const want = await readCgroupSample(located.location, readCgroupFile, { netDev, now: () => 0 });
    const cache = new FileCache(new FdBudget(100), root('v1-cgroupfs'), netDev);
    expect(await readCgroupSample(located.location, cache.read, { netDev, now: () => 0 })).toEqual(want);
    expect(cache.openFiles).toBe(Object.keys(located.location.files).length + 1);
    expect(await cache.read(path.join(DIR, 'v1-cgroupfs/cases.json'))).toBe(fs.readFileSync(path.join(DIR, 'v1-cgroupfs/cases.json'), 'utf8'));
    expect(cache.openFiles).toBe(Object.keys(located.location.files).length + 1);
    cache.close();
  });

  it('keeps no more files open than its budget, shared between caches, and reads the rest anyway', async () => {
    const { location } = await sampleOf('v1-cgroupfs');
    const budget = new FdBudget(20);
    const a = new FileCache(budget, root('v1-cgroupfs'));
    const b = new FileCache(budget, root('v1-cgroupfs'));
    const want = await readCgroupSample(location, readCgroupFile, { now: () => 0 });
    expect(await readCgroupSample(location, a.read, { now: () => 0 })).toEqual(want);
    expect(await readCgroupSample(location, b.read, { now: () => 0 })).toEqual(want);
    expect(a.openFiles).toBe(14);
    expect(b.openFiles).toBe(6);
    expect(budget.open).toBe(20);
    a.close();
    expect(budget.open).toBe(6);
    b.close();
    expect(budget.open).toBe(0);
  });

  it('reads a file longer than its buffer whole, sees a rewritten one anew, and a missing one as gone', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'filecache-'));
    try {
      const file = path.join(dir, 'io.stat');
      const long = Array.from({ length: 2000 }, (_, i) => `8:${i} rbytes=${i} wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n`).join('');
      expect(long.length).toBeGreaterThan(64 * 1024);
      fs.writeFileSync(file, long);
      const cache = new FileCache(new FdBudget(10), dir);
      expect(await cache.read(file)).toBe(long);
      // Kept open, read at offset 0 again: what the file holds now.
      fs.writeFileSync(file, '8:0 rbytes=1\n');
      expect(await cache.read(file)).toBe('8:0 rbytes=1\n');
      expect(await cache.read(path.join(dir, 'memory.peak'))).toBeUndefined();
      await expect(cache.read(path.join(dir, '..'))).rejects.toThrow(/EISDIR/);
      expect(cache.openFiles).toBe(1);
      cache.close();
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('sizes the budget from RLIMIT_NOFILE: a quarter (at least 1,024) left for the rest, at most 32,768', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'limits-'));
    try {
      fs.mkdirSync(path.join(dir, 'self'));
      const limits = (soft: string): number => {
        fs.writeFileSync(path.join(dir, 'self/limits'), `Limit                     Soft Limit           Hard Limit           Units     \nMax open files            ${soft}                1048576              files     \n`);
        return FdBudget.forThisProcess(dir).max;
      };
      expect(limits('1024')).toBe(0);
      expect(limits('4096')).toBe(3072);
      expect(limits('20000')).toBe(15000);
      expect(limits('1048576')).toBe(32768);
      expect(limits('unlimited')).toBe(32768);
      expect(FdBudget.forThisProcess(path.join(dir, 'none')).max).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe('the readers', () => {
  it('give undefined for a missing file, the text otherwise, and reject other errors', async () => {
    const file = path.join(DIR, 'v2-systemd/proc/1234/cgroup');
    for (const read of [readCgroupFile, readCgroupFileInPool]) {
      expect(await read(file)).toBe(fs.readFileSync(file, 'utf8'));
      expect(await read(path.join(DIR, 'no/such/file'))).toBeUndefined();
      await expect(read(DIR)).rejects.toThrow(/EISDIR/);
    }
    expect(await pathExists(file)).toBe(true);
    expect(await pathExists(`${file}.nope`)).toBe(false);
  });
});

/** An Exists over a list of paths (directories implied by the files under them). */
function fakeExists(paths: string[]): Exists {
  const all = new Set<string>();
  for (const p of paths) for (let d = p; d !== '/' && d !== '.'; d = path.dirname(d)) all.add(d);
  return (p) => Promise.resolve(all.has(p));
}

async function locatedIn(paths: string[], proc: string): Promise<CgroupLocation> {
  const e = fakeExists(paths);
  const layout = await detectCgroupLayout('/r', e);
  const r = await locateCgroup(layout!, proc, e);
  if (!r.found) throw new Error(r.reason);
  return r.location;
}
