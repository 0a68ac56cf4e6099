import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DISK_USAGE_KINDS, parseDiskUsage, type DiskUsage, type DiskUsageKind, type KindUsage } from '../../src/parse/df.js';
import { PayloadError } from '../../src/parse/guards.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'df');
const UPDATE = process.env.UPDATE_GOLDEN === '1';

function fixture(name: string): unknown {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8'));
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

const row = (total: number, active: number, size: number, reclaimable: number): KindUsage => ({ total, active, size, reclaimable });

/**
 * Bounds of a size the CLI printed with go-units HumanSize ("%.4g" of decimal units), e.g.
 * "55.3kB" → [55295, 55305]: the last significant digit is rounded, and %g drops trailing zeros.
 */
function humanBounds(text: string): [number, number] {
  const m = /^(-?[\d.]+)(B|kB|MB|GB|TB|PB)$/.exec(text);
  if (!m) throw new Error(`not a CLI size: ${text}`);
  const mantissa = Number(m[1]);
  const unit = 1000 ** ['B', 'kB', 'MB', 'GB', 'TB', 'PB'].indexOf(m[2]!);
  if (mantissa === 0) return [0, 0];
  const half = 10 ** (Math.floor(Math.log10(Math.abs(mantissa))) - 3) / 2;
  return [(mantissa - half) * unit, (mantissa + half) * unit];
}

/** Checks one row against the CLI's JSON for the same engine state: counts exact, sizes within rounding, % exact. */
function expectMatchesCli(usage: KindUsage, cli: Record<string, string>): void {
  expect(String(usage.total)).toBe(cli.TotalCount);
  expect(String(usage.active)).toBe(cli.Active);
  const [sizeLo, sizeHi] = humanBounds(cli.Size!);
  expect(usage.size).toBeGreaterThanOrEqual(sizeLo);
  expect(usage.size).toBeLessThanOrEqual(sizeHi);
  const rec = /^(\S+)(?: \((\d+)%\))?$/.exec(cli.Reclaimable!)!;
  const [recLo, recHi] = humanBounds(rec[1]!);
  expect(usage.reclaimable).toBeGreaterThanOrEqual(recLo);
  expect(usage.reclaimable).toBeLessThanOrEqual(recHi);
  // Go's int64 division: truncated, and only printed when SIZE > 0 (never for build cache).
  if (rec[2] !== undefined) expect(Math.trunc((usage.reclaimable * 100) / usage.size)).toBe(Number(rec[2]));
}

const CLI_TYPES: Record<string, DiskUsageKind> = {
  Images: 'images',
  Containers: 'containers',
  'Local Volumes': 'volumes',
  'Build Cache': 'build_cache',
};

// The engine state recorded in engine-20.10-classic.json (see the fixtures' README).
const ENGINE = {
  running: 'ca6bef11d97fa7a63a66784da91a204634e834a13f2d429a8675d9f95e7bd10a',
  exited: '16303f0f0bba',
  created: 'af217deaac38992daa48e222fe3982b0354dcff7b96509f03c8d903a1c5a0703',
  paused: '0c15692fec4d',
};

function byPrefix(du: DiskUsage, prefix: string): [string, DiskUsage['containers'][string]] {
  const hit = Object.entries(du.containers).find(([id]) => id.startsWith(prefix));
  if (!hit) throw new Error(`no container ${prefix}`);
  return hit;
}

const ENGINE_VOLUMES = [
  { name: 'dfrec-vol-used', driver: 'local', size: 71680, refCount: 1 },
  { name: 'dfrec-vol-idle', driver: 'local', size: 51200, refCount: 0 },
  { name: 'dfrec-vol-empty', driver: 'local', size: 0, refCount: 0 },
];

describe('parseDiskUsage: golden outputs', () => {
  const inputs = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.json') && !f.includes('.golden.') && !f.includes('.cli.'));
  it('has fixtures of both shapes', () => {
    expect(inputs.length).toBeGreaterThanOrEqual(6);
  });
  for (const name of inputs) {
    it(name, () => {
      const got = parseDiskUsage(fixture(name));
      const golden = path.join(FIXTURES, name.replace(/\.json$/, '.golden.json'));
      const text = JSON.stringify(got, null, 2) + '\n';
      if (UPDATE) fs.writeFileSync(golden, text);
      // A fixture without its golden file is a failure, not a new golden: run with UPDATE_GOLDEN=1 and read the diff.
      expect(fs.existsSync(golden), `${golden} is missing`).toBe(true);
      expect(text).toBe(fs.readFileSync(golden, 'utf8'));
    });
  }
});

describe('parseDiskUsage: classic shape (API < 1.52), rules of docker/cli 28', () => {
  it('recorded engine 20.10 payload: exact figures', () => {
    const du = parseDiskUsage(fixture('engine-20.10-classic.json'));
    expect(du.shape).toBe('classic');
    // LayersSize 2414264 less the unique bytes of in-use images (8 + 122880): a layer that an in-use
    // image shares with another image counts as reclaimable, so 94% with 4 of 5 images in use.
    expect(du.kinds.images).toEqual(row(5, 4, 2414264, 2414264 - 8 - 122880));
    // running 33792 + paused 2 are active; exited 21504 reclaimable; created has no SizeRw (0).
    expect(du.kinds.containers).toEqual(row(4, 2, 33792 + 21504 + 2, 21504));
    expect(du.kinds.volumes).toEqual(row(3, 1, 71680 + 51200, 51200));
    // Only the non-shared records count (BuilderSize 635140 is ignored): 10240+100+10240+307206+154.
    expect(du.kinds.build_cache).toEqual(row(7, 0, 327940, 327940));
    expect(du.containers[ENGINE.running]).toEqual({ sizeRw: 33792, sizeRootFs: 2325164 });
    expect(du.containers[ENGINE.created]).toEqual({ sizeRw: 0, sizeRootFs: 1984172 });
    expect(byPrefix(du, ENGINE.exited)[1]).toEqual({ sizeRw: 21504, sizeRootFs: 2435756 });
    expect(byPrefix(du, ENGINE.paused)[1]).toEqual({ sizeRw: 2, sizeRootFs: 1984182 });
    expect(Object.keys(du.containers)).toHaveLength(4);
    expect(du.volumes).toEqual(ENGINE_VOLUMES);
  });

  it('recorded engine 20.10 payload agrees with `docker system df` recorded at the same moment', () => {
    const du = parseDiskUsage(fixture('engine-20.10-classic.json'));
    const cli = fixture('engine-20.10-classic.cli.json') as Array<Record<string, string>>;
    expect(cli.map((r) => CLI_TYPES[r.Type!])).toEqual([...DISK_USAGE_KINDS]);
    for (const r of cli) expectMatchesCli(du.kinds[CLI_TYPES[r.Type!]!]!, r);
  });

  it('Engine API v1.41 documentation example', () => {
    const du = parseDiskUsage(fixture('docs-v1.41-classic.json'));
    expect(du.kinds).toEqual({
      images: row(1, 1, 1092588, 0),
      // The example container has no SizeRw: the engine omits zeros.
      containers: row(1, 0, 0, 0),
      volumes: row(1, 1, 10920104, 0),
      // Both records are shared with images: no bytes of their own.
      build_cache: row(2, 0, 0, 0),
    });
    expect(du.containers).toEqual({
      e575172ed11dc01bfce087fb27bee502db149e1a0fad7c296ad300bbff178148: { sizeRw: 0, sizeRootFs: 1092588 },
    });
    expect(du.volumes).toEqual([{ name: 'my-volume', driver: 'local', size: 10920104, refCount: 2 }]);
  });

  it('images: Containers -1 is in use for RECLAIMABLE but not ACTIVE; Size or SharedSize -1 is skipped', () => {
    const du = parseDiskUsage({
      LayersSize: 1000,
      Images: [
        { Id: 'a', Size: 300, SharedSize: 100, Containers: -1 },
        { Id: 'b', Size: 200, SharedSize: 0, Containers: 2 },
        { Id: 'c', Size: -1, SharedSize: 0, Containers: 1 },
        { Id: 'd', Size: 400, SharedSize: -1, Containers: 1 },
        { Id: 'e', Size: 100, SharedSize: 0, Containers: 0 },
        { Id: 'f', Size: 50 },
      ],
    });
    expect(du.kinds.images).toEqual(row(6, 3, 1000, 1000 - 200 - 200));
  });

  it('containers: running, paused and restarting are active; anything else is reclaimable', () => {
    const states = ['running', 'paused', 'restarting', 'created', 'exited', 'dead', 'removing', 'bogus', undefined];
    const du = parseDiskUsage({ LayersSize: 0, Containers: states.map((State, i) => ({ Id: 'x', State, SizeRw: 10 ** i })) });
    expect(du.kinds.containers).toEqual(row(9, 3, 111111111, 111111000));
    expect(du.containers).toEqual({});
  });

  it('volumes: -1 counts nowhere; RefCount -1 is neither active nor reclaimable; no UsageData is unknown', () => {
    const du = parseDiskUsage({
      Volumes: [
        { Name: 'a', Driver: 'local', UsageData: { Size: 100, RefCount: 0 } },
        { Name: 'b', Driver: 'local', UsageData: { Size: 200, RefCount: 3 } },
        { Name: 'c', Driver: 'nfs', UsageData: { Size: -1, RefCount: 1 } },
        { Name: 'd', Driver: 'nfs', UsageData: { Size: -1, RefCount: 0 } },
        { Name: 'e', Driver: 'local', UsageData: { Size: 40, RefCount: -1 } },
        { Name: 'f', Driver: 'local' },
        { Driver: 'local', UsageData: { Size: 1, RefCount: 0 } },
      ],
    });
    expect(du.kinds.volumes).toEqual(row(7, 2, 100 + 200 + 40 + 1, 100 + 1));
    expect(du.volumes).toEqual([
      { name: 'a', driver: 'local', size: 100, refCount: 0 },
      { name: 'b', driver: 'local', size: 200, refCount: 3 },
      { name: 'c', driver: 'nfs', refCount: 1 },
      { name: 'd', driver: 'nfs', refCount: 0 },
      { name: 'e', driver: 'local', size: 40 },
      { name: 'f', driver: 'local' },
    ]);
  });

  it('build cache: SIZE sums unshared records, RECLAIMABLE leaves out those in use', () => {
    const du = parseDiskUsage({
      LayersSize: 0,
      BuilderSize: 999999,
      BuildCache: [
        { ID: '1', InUse: true, Shared: false, Size: 1000 },
        { ID: '2', InUse: true, Shared: true, Size: 2000 },
        { ID: '3', InUse: false, Shared: false, Size: 400 },
        { ID: '4', InUse: false, Shared: true, Size: 80 },
        { ID: '5', Size: 6 },
      ],
    });
    expect(du.kinds.build_cache).toEqual(row(5, 2, 1406, 406));
  });

  it('null or missing lists are empty (old engines send null for no objects)', () => {
    const du = parseDiskUsage({ LayersSize: 0, Images: null, Containers: null, Volumes: null, BuildCache: null });
    for (const kind of DISK_USAGE_KINDS) expect(du.kinds[kind]).toEqual(row(0, 0, 0, 0));
    expect(parseDiskUsage({ LayersSize: 0 }).kinds.build_cache).toEqual(row(0, 0, 0, 0));
  });

  it('per-container sizes: missing is 0 (omitempty), wrong type or negative is omitted, bad ids are skipped', () => {
    const id = (c: string): string => c.repeat(64);
    const du = parseDiskUsage({
      Containers: [
        { Id: id('a'), State: 'exited' },
        { Id: id('b'), State: 'exited', SizeRw: '12', SizeRootFs: -1 },
        { Id: id('c'), State: 'exited', SizeRw: 5, SizeRootFs: 9 },
        { Id: 'short', State: 'exited', SizeRw: 7 },
        { Id: id('A'), State: 'exited', SizeRw: 7 },
        { State: 'exited', SizeRw: 7 },
      ],
    });
    expect(du.containers).toEqual({ [id('a')]: { sizeRw: 0, sizeRootFs: 0 }, [id('b')]: {}, [id('c')]: { sizeRw: 5, sizeRootFs: 9 } });
    // Still counted in the row, as the CLI counts every listed container.
    expect(du.kinds.containers).toEqual(row(6, 0, 26, 26));
  });
});

describe('parseDiskUsage: API 1.52 shape (engine-computed rows)', () => {
  it('documentation example values', () => {
    const du = parseDiskUsage(fixture('v1.52-docs-example.json'));
    expect(du.shape).toBe('v1.52');
    for (const kind of DISK_USAGE_KINDS) expect(du.kinds[kind]).toEqual(row(4, 1, 98765432, 12345678));
    expect(du.containers).toEqual({});
    expect(du.volumes).toEqual([]);
  });

  // What a 1.52 engine computes for the recorded state differs from the CLI 28 rules for images
  // (unique bytes of unused images) and build cache (shared records counted): the engine's word wins.
  const ENGINE_152 = {
    images: row(5, 4, 2414264, 4),
    containers: row(4, 2, 55298, 21504),
    volumes: row(3, 1, 122880, 51200),
    build_cache: row(7, 0, 635140, 327940),
  };

  it('compat answer (no verbose: legacy lists and *Usage both present) takes the *Usage figures', () => {
    const du = parseDiskUsage(fixture('v1.52-compat.json'));
    expect(du.shape).toBe('v1.52');
    expect(du.kinds).toEqual(ENGINE_152);
    expect(du.containers[ENGINE.running]).toEqual({ sizeRw: 33792, sizeRootFs: 2325164 });
    expect(du.containers[ENGINE.created]).toEqual({ sizeRw: 0, sizeRootFs: 1984172 });
    expect(du.volumes).toEqual(ENGINE_VOLUMES);
  });

  it('verbose answer: per-object data from Items', () => {
    const du = parseDiskUsage(fixture('v1.52-verbose.json'));
    expect(du.kinds).toEqual(ENGINE_152);
    expect(Object.keys(du.containers)).toHaveLength(4);
    expect(byPrefix(du, ENGINE.paused)[1]).toEqual({ sizeRw: 2, sizeRootFs: 1984182 });
    expect(du.volumes).toEqual(ENGINE_VOLUMES);
  });

  it('a kind the engine left out (type filter, no builder) is absent, not zero', () => {
    const du = parseDiskUsage(fixture('v1.52-type-volume.json'));
    expect(du.kinds).toEqual({ volumes: ENGINE_152.volumes });
    expect(du.volumes).toEqual(ENGINE_VOLUMES);
    expect(du.containers).toEqual({});
  });

  it('omitted totals are zero (omitempty); an empty *Usage is a computed, empty kind', () => {
    const du = parseDiskUsage({ ImageUsage: { TotalSize: 4096 }, ContainerUsage: {}, BuildCacheUsage: null });
    expect(du.kinds).toEqual({ images: row(0, 0, 4096, 0), containers: row(0, 0, 0, 0) });
  });

  it('Items without totals do not make up totals', () => {
    const du = parseDiskUsage({ ContainerUsage: { Items: [{ Id: 'f'.repeat(64), State: 'exited', SizeRw: 30 }] } });
    expect(du.kinds).toEqual({ containers: row(0, 0, 0, 0) });
    expect(du.containers).toEqual({ ['f'.repeat(64)]: { sizeRw: 30, sizeRootFs: 0 } });
  });
});

describe('parseDiskUsage: untrusted input', () => {
  const bad: unknown[] = [
    undefined, null, 0, 42, 'df', true, [], [{}], {}, { Foo: 1 },
    { LayersSize: '1' }, { LayersSize: NaN }, { Images: 'x' }, { Images: {} }, { Images: [1] }, { Containers: [null] },
    { Volumes: [[]] }, { BuildCache: 'none' }, { ImageUsage: 5 }, { ImageUsage: [] }, { ContainerUsage: { Items: {} } },
    { VolumeUsage: { Items: [3] } }, { ImageUsage: { TotalSize: '1' } }, { BuildCacheUsage: { TotalCount: Infinity } },
    { ImageUsage: { ActiveCount: {} } }, Buffer.from('<html>502 Bad Gateway</html>'), Buffer.from('{}'),
  ];
  it.each(bad.map((b) => [JSON.stringify(b) ?? String(b), b]))('%s throws PayloadError', (_, payload) => {
    expect(() => parseDiskUsage(payload)).toThrow(PayloadError);
  });

  it('names what it got instead of an object', () => {
    expect(() => parseDiskUsage([])).toThrow('system df payload is array, not an object');
    expect(() => parseDiskUsage(Buffer.from('{}'))).toThrow('system df payload is bytes, not an object');
  });

  /** Replaces one node somewhere in the tree with an odd value. */
  function mutate(root: unknown, rand: () => number): unknown {
    const odd = [null, undefined, -1, 0, 1e300, -0.5, '', 'x', true, [], {}, [null], { Size: 'big' }, '__proto__', NaN];
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
    if (rand() < 0.05) return pick(odd);
    let node = root;
    for (let depth = 0; depth < 6; depth++) {
      const keys = node && typeof node === 'object' ? Object.keys(node) : [];
      if (keys.length === 0) break;
      const key = pick(keys);
      const child = (node as Record<string, unknown>)[key];
      if (rand() < 0.3 || !child || typeof child !== 'object') {
        (node as Record<string, unknown>)[key] = pick(odd);
        return root;
      }
      node = child;
    }
    return root;
  }

  it('thousands of mutated fixtures: PayloadError or a result of finite numbers, nothing else', () => {
    let seed = 42;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const bases = ['engine-20.10-classic.json', 'docs-v1.41-classic.json', 'v1.52-compat.json', 'v1.52-verbose.json', 'v1.52-docs-example.json'].map(fixture);
    let parsed = 0;
    let rejected = 0;
    for (let i = 0; i < 3000; i++) {
      let payload: unknown = clone(bases[i % bases.length]);
      for (let m = 0; m < 1 + (i % 4); m++) payload = mutate(payload, rand);
      let du: DiskUsage;
      try {
        du = parseDiskUsage(payload);
      } catch (err) {
        expect(err).toBeInstanceOf(PayloadError);
        rejected++;
        continue;
      }
      parsed++;
      for (const usage of Object.values(du.kinds)) for (const v of Object.values(usage)) expect(Number.isFinite(v)).toBe(true);
      for (const sizes of Object.values(du.containers)) for (const v of Object.values(sizes)) expect(v).toBeGreaterThanOrEqual(0);
      for (const v of du.volumes) {
        expect(typeof v.name).toBe('string');
        if (v.size !== undefined) expect(v.size).toBeGreaterThanOrEqual(0);
      }
    }
    expect(parsed).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(100);
  });
});
