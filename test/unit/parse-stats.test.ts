import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PayloadError } from '../../src/parse/guards.js';
import { parseStats, type StatsSample } from '../../src/parse/stats.js';

const DIR = new URL('../fixtures/stats/', import.meta.url).pathname;
const FIXTURES = fs.readdirSync(DIR).filter((f) => f.endsWith('.json') && !f.endsWith('.expected.json')).sort();

function load(name: string): Record<string, any> {
  return JSON.parse(fs.readFileSync(path.join(DIR, name), 'utf8'));
}

function sample(name: string): StatsSample {
  const s = parseStats(load(name));
  if (!s) throw new Error(`${name} parsed as a skipped sample`);
  return s;
}

describe('parseStats golden outputs', () => {
  it('has every kind of fixture the catalogue needs', () => {
    expect(FIXTURES).toEqual(
      expect.arrayContaining(['v1-busy.json', 'v1-limits.json', 'v1-user-network.json', 'v1-blkio.json', 'v2-docs.json', 'v2-recorded.json', 'windows.json', 'zero-read.json']),
    );
  });

  // UPDATE_GOLDEN=1 rewrites the .expected.json files; review the diff before committing it.
  for (const file of FIXTURES) {
    it(`${file} matches ${file.replace(/\.json$/, '.expected.json')}`, () => {
      const got = JSON.parse(JSON.stringify(parseStats(load(file))));
      const goldenPath = path.join(DIR, file.replace(/\.json$/, '.expected.json'));
      if (process.env.UPDATE_GOLDEN === '1') fs.writeFileSync(goldenPath, `${JSON.stringify(got, null, 2)}\n`);
      expect(got).toEqual(JSON.parse(fs.readFileSync(goldenPath, 'utf8')));
    });
  }
});

describe('parseStats on cgroup v1 payloads recorded from this engine', () => {
  it('reads CPU as seconds, user and system apart', () => {
    const raw = load('v1-busy.json');
    const s = sample('v1-busy.json');
    expect(s.flavour).toBe('cgroup1');
    expect(s.cpuTotalSeconds).toBe(raw.cpu_stats.cpu_usage.total_usage / 1e9);
    expect(s.cpuUserSeconds).toBe(raw.cpu_stats.cpu_usage.usage_in_usermode / 1e9);
    expect(s.cpuSystemSeconds).toBe(raw.cpu_stats.cpu_usage.usage_in_kernelmode / 1e9);
    expect(s.read).toBeCloseTo(Date.parse(raw.read) / 1000, 3);
  });

  it('computes the working set as docker stats does: usage - total_inactive_file', () => {
    const s = sample('v1-limits.json');
    expect(s.memoryUsageBytes).toBe(29073408);
    expect(s.memoryWorkingSetBytes).toBe(29073408 - 8388608);
    expect(s.memoryRssBytes).toBe(20127744);
    expect(s.memoryCacheBytes).toBe(8392704);
    expect(s.memoryMappedFileBytes).toBe(0);
    expect(s.memoryMaxUsageBytes).toBe(49336320);
    expect(s.pgfault).toBe(11272);
    expect(s.pgmajfault).toBe(0);
    for (const f of ['v1-busy.json', 'v1-one-shot.json', 'v1-stream-first.json', 'v1-user-network.json']) {
      const raw = load(f);
      expect(sample(f).memoryWorkingSetBytes, f).toBe(raw.memory_stats.usage - raw.memory_stats.stats.total_inactive_file);
    }
  });

  it('reads throttling of a --cpus 0.5 container, and pids current and limit', () => {
    const s = sample('v1-limits.json');
    expect(s.cfsPeriods).toBe(131);
    expect(s.cfsThrottledPeriods).toBe(72);
    expect(s.cfsThrottledSeconds).toBe(2.363847493);
    expect(s.threads).toBe(1);
    expect(s.threadsMax).toBe(100);
  });

  it('omits the pids limit when the container has none', () => {
    const s = sample('v1-busy.json');
    expect(s.threads).toBe(1);
    expect(s.threadsMax).toBeUndefined();
  });

  it('keeps every interface of a container on two networks apart', () => {
    const s = sample('v1-user-network.json');
    expect(s.networks.map((n) => n.name)).toEqual(['eth0', 'eth1']);
    expect(s.networks[0]).toEqual({ name: 'eth0', rxBytes: 9656, rxPackets: 141, rxDropped: 0, rxErrors: 0, txBytes: 6008868, txPackets: 129, txDropped: 0, txErrors: 0 });
    expect(s.networks[1]).toMatchObject({ name: 'eth1', rxBytes: 736, rxPackets: 8, txBytes: 0 });
  });

  it('does not drop the first streamed sample, whose precpu_stats is empty', () => {
    const raw = load('v1-stream-first.json');
    expect(raw.preread).toBe('0001-01-01T00:00:00Z');
    expect(sample('v1-stream-first.json').cpuTotalSeconds).toBeGreaterThan(0);
  });

  it('has no block I/O series when the engine reports empty lists (this engine)', () => {
    expect(sample('v1-busy.json').blkio).toEqual([]);
  });

  it('skips the empty samples the engine streams after a container stopped', () => {
    expect(parseStats(load('zero-read.json'))).toBeNull();
    expect(parseStats({ read: '0001-01-01T00:00:00Z' })).toBeNull();
    expect(parseStats({ read: '0001-01-01T00:00:00.000000000Z', cpu_stats: { cpu_usage: { total_usage: 5 } } })).toBeNull();
  });
});

describe('parseStats on block I/O payloads from engines that report it', () => {
  it('v1 (docker-py fixture): Read/Write bytes and counts per major:minor, Sync/Async/Total ignored', () => {
    const s = sample('v1-blkio.json');
    expect(s.blkio).toEqual([{ device: '8:0', readBytes: 72843264, writeBytes: 4096, reads: 10581, writes: 1 }]);
    // API < 1.21 had one `network` object instead of `networks`: no interface to name, so none.
    expect(s.networks).toEqual([]);
    expect(s.read).toBeCloseTo(Date.parse('2015-02-11T17:20:46.667Z') / 1000, 3);
  });

  it('v2 (moby API docs): lowercase read/write, no serviced counts', () => {
    expect(sample('v2-docs.json').blkio).toEqual([{ device: '254:0', readBytes: 7593984, writeBytes: 100 }]);
  });

  it('v2 (recorded): one entry per device', () => {
    expect(sample('v2-recorded.json').blkio).toEqual([
      { device: '7:2', readBytes: 1998848, writeBytes: 0 },
      { device: '253:1', readBytes: 1998848, writeBytes: 0 },
      { device: '253:2', readBytes: 1998848, writeBytes: 0 },
    ]);
  });

  it('sums entries of one device and op written in both cases, as docker stats does', () => {
    const s = parseStats({
      read: '2025-01-01T00:00:00Z',
      blkio_stats: {
        io_service_bytes_recursive: [
          { major: 8, minor: 0, op: 'read', value: 1234 },
          { major: 8, minor: 1, op: 'read', value: 4567 },
          { major: 8, minor: 0, op: 'Read', value: 6 },
          { major: 8, minor: 0, op: 'Write', value: 6 },
          { major: 8, minor: 1, op: 'write', value: 456 },
          { major: 8, minor: 1, op: '', value: 456 },
          { major: 8, minor: 1, op: 'Total', value: 999 },
        ],
      },
    });
    expect(s?.blkio).toEqual([
      { device: '8:0', readBytes: 1240, writeBytes: 6 },
      { device: '8:1', readBytes: 4567, writeBytes: 456 },
    ]);
  });
});

describe('parseStats on cgroup v2 payloads', () => {
  it('uses the v2 field names: anon, file, file_mapped, inactive_file, pgfault', () => {
    const s = sample('v2-docs.json');
    expect(s.flavour).toBe('cgroup2');
    expect(s.memoryUsageBytes).toBe(10396928);
    expect(s.memoryWorkingSetBytes).toBe(10396928 - 2510848);
    expect(s.memoryRssBytes).toBe(1572864);
    expect(s.memoryCacheBytes).toBe(7626752);
    expect(s.memoryMappedFileBytes).toBe(2723840);
    expect(s.pgfault).toBe(2042);
    expect(s.pgmajfault).toBe(45);
    expect(s.cpuTotalSeconds).toBe(0.029912);
    expect(s.cpuUserSeconds).toBe(0.007918);
    expect(s.cpuSystemSeconds).toBe(0.021994);
  });

  it('has no max_usage on v2 and treats pids.max "max" (2^64-1) as no limit', () => {
    const s = sample('v2-docs.json');
    expect(s.memoryMaxUsageBytes).toBeUndefined();
    expect(s.threads).toBe(5);
    expect(s.threadsMax).toBeUndefined();
    expect(sample('v2-recorded.json').threadsMax).toBe(2192);
  });

  it('working set of the recorded payload equals docker stats MEM USAGE (usage - inactive_file)', () => {
    expect(sample('v2-recorded.json').memoryWorkingSetBytes).toBe(2240512 - 1892352);
  });

  it('floors the working set at 0 when inactive_file exceeds usage', () => {
    const s = parseStats({ read: '2025-01-01T00:00:00Z', memory_stats: { usage: 100, stats: { inactive_file: 150, anon: 1 } } });
    expect(s?.memoryWorkingSetBytes).toBe(0);
    expect(s?.memoryUsageBytes).toBe(100);
  });
});

describe('parseStats on Windows payloads', () => {
  it('converts 100 ns CPU units, takes the private working set, and invents nothing Linux-only', () => {
    const s = sample('windows.json');
    expect(s.flavour).toBe('windows');
    expect(s.cpuTotalSeconds).toBeCloseTo(2.9912, 9);
    expect(s.cpuUserSeconds).toBeCloseTo(0.7918, 9);
    expect(s.cpuSystemSeconds).toBeCloseTo(2.1994, 9);
    expect(s.memoryWorkingSetBytes).toBe(129720320);
    for (const k of ['memoryUsageBytes', 'memoryRssBytes', 'memoryCacheBytes', 'memoryMaxUsageBytes', 'cfsPeriods', 'cfsThrottledPeriods', 'cfsThrottledSeconds', 'threads', 'threadsMax', 'pgfault'] as const) {
      expect(s[k], k).toBeUndefined();
    }
    expect(s.blkio).toEqual([]);
    expect(s.networks).toHaveLength(1);
    expect(s.networks[0]).toMatchObject({ rxBytes: 565000000, txBytes: 503000000, rxDropped: 12 });
    expect(s.networks[0]?.rxErrors).toBeUndefined();
  });

  it('recognises Windows payloads of engines before API 1.52 (no os_type)', () => {
    const raw = load('windows.json');
    delete raw.os_type;
    expect(parseStats(raw)?.flavour).toBe('windows');
    delete raw.num_procs;
    expect(parseStats(raw)?.flavour).toBe('windows');
  });

  it('leaves user and system out for Hyper-V isolation, which does not populate them', () => {
    const s = parseStats({ read: '2025-01-01T00:00:00Z', os_type: 'windows', cpu_stats: { cpu_usage: { total_usage: 5e7, usage_in_kernelmode: 0, usage_in_usermode: 0 } } });
    expect(s?.cpuTotalSeconds).toBe(5);
    expect(s?.cpuUserSeconds).toBeUndefined();
    expect(s?.cpuSystemSeconds).toBeUndefined();
  });
});

describe('parseStats on garbage', () => {
  it('throws PayloadError for what is not a stats object', () => {
    for (const bad of [null, undefined, 0, 1, 'x', '', true, [], [{}], { read: 5 }, {}, { read: 'yesterday' }, { read: '2025-13-45T99:00:00Z' }]) {
      expect(() => parseStats(bad), JSON.stringify(bad)).toThrow(PayloadError);
    }
  });

  it('omits and counts fields of the wrong type instead of exporting them', () => {
    const s = parseStats({
      read: '2025-01-01T00:00:00Z',
      cpu_stats: { cpu_usage: { total_usage: '12', usage_in_usermode: -1, usage_in_kernelmode: 3e9 } },
      memory_stats: { usage: null, stats: 'x', max_usage: 1 },
      networks: { eth0: 'x', eth1: { rx_bytes: true, tx_bytes: 10 } },
      blkio_stats: { io_service_bytes_recursive: {}, io_serviced_recursive: [5, { op: 7 }, { op: 'Read', major: 'a', minor: 0, value: 1 }] },
      pids_stats: { current: Infinity, limit: 'max' },
    });
    expect(s).not.toBeNull();
    expect(s!.cpuTotalSeconds).toBeUndefined();
    expect(s!.cpuUserSeconds).toBeUndefined();
    expect(s!.cpuSystemSeconds).toBe(3);
    expect(s!.memoryUsageBytes).toBeUndefined();
    expect(s!.memoryWorkingSetBytes).toBeUndefined();
    expect(s!.memoryMaxUsageBytes).toBe(1);
    expect(s!.networks).toEqual([{ name: 'eth1', rxBytes: undefined, rxPackets: undefined, rxDropped: undefined, rxErrors: undefined, txBytes: 10, txPackets: undefined, txDropped: undefined, txErrors: undefined }]);
    expect(s!.blkio).toEqual([]);
    expect(s!.threads).toBeUndefined();
    expect(s!.threadsMax).toBeUndefined();
    // total_usage, usermode, stats, eth0, rx_bytes, io_service_bytes_recursive, 5, op 7, major 'a', current, limit
    expect(s!.malformed).toBe(11);
  });

  it('counts nothing as malformed in the recorded fixtures', () => {
    for (const f of FIXTURES) expect(parseStats(load(f))?.malformed ?? 0, f).toBe(0);
  });

  it('never throws anything but PayloadError, nor yields a negative or non-finite number, whatever field is replaced or removed', () => {
    const replacements: unknown[] = [null, 'str', -1, 1.5, 0, {}, [], true, [1, 2], { a: 1 }, 2 ** 64];
    let cases = 0;
    for (const file of FIXTURES) {
      const base = load(file);
      for (const p of paths(base)) {
        for (const value of [...replacements, REMOVE]) {
          const mutated = structuredClone(base);
          setAt(mutated, p, value);
          cases++;
          let s: StatsSample | null;
          try {
            s = parseStats(mutated);
          } catch (err) {
            if (err instanceof PayloadError) continue;
            throw new Error(`${file} with ${p.join('.')} = ${String(value)}: ${(err as Error).stack}`);
          }
          if (s) assertSane(s, `${file} with ${p.join('.')} = ${JSON.stringify(value)}`);
        }
      }
    }
    expect(cases).toBeGreaterThan(10_000);
  });

  it('survives truncated payloads: every prefix of a recorded line that is still JSON', () => {
    const text = JSON.stringify(load('v1-user-network.json'));
    // Cut the object short at every key boundary and close it, as a half-written record would look if repaired.
    for (let i = 1; i < text.length; i++) {
      if (text[i] !== ',') continue;
      const candidate = closeJson(text.slice(0, i));
      let value: unknown;
      try {
        value = JSON.parse(candidate);
      } catch {
        continue;
      }
      try {
        const s = parseStats(value);
        if (s) assertSane(s, candidate.slice(-40));
      } catch (err) {
        if (!(err instanceof PayloadError)) throw err;
      }
    }
  });
});

const REMOVE = Symbol('remove');

/** Every path to a value inside `value` (object keys and array indexes). */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [];
  if (Array.isArray(value)) value.forEach((v, i) => out.push([...prefix, i], ...paths(v, [...prefix, i])));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) out.push([...prefix, k], ...paths(v, [...prefix, k]));
  return out;
}

function setAt(root: any, p: (string | number)[], value: unknown): void {
  let o = root;
  for (const k of p.slice(0, -1)) o = o[k];
  const last = p[p.length - 1]!;
  if (value === REMOVE) {
    if (Array.isArray(o)) o.splice(last as number, 1);
    else delete o[last];
  } else o[last] = value;
}

/** Closes the open brackets of a JSON prefix that ends right before a comma. */
function closeJson(prefix: string): string {
  const stack: string[] = [];
  let inString = false;
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') stack.push('}');
    else if (c === '[') stack.push(']');
    else if (c === '}' || c === ']') stack.pop();
  }
  return prefix + stack.reverse().join('');
}

function assertSane(s: StatsSample, where: string): void {
  const numbers: [string, unknown][] = Object.entries(s).filter(([, v]) => typeof v === 'number');
  for (const n of s.networks) numbers.push(...Object.entries(n).filter(([, v]) => typeof v === 'number'));
  for (const d of s.blkio) numbers.push(...Object.entries(d).filter(([, v]) => typeof v === 'number'));
  for (const [k, v] of numbers) {
    if (!Number.isFinite(v as number) || (v as number) < 0) throw new Error(`${where}: ${k} = ${String(v)}`);
  }
  if (s.memoryWorkingSetBytes !== undefined && s.memoryUsageBytes !== undefined && s.memoryWorkingSetBytes > s.memoryUsageBytes) {
    throw new Error(`${where}: working set above usage`);
  }
  for (const d of s.blkio) if (!/^\d+:\d+$/.test(d.device)) throw new Error(`${where}: device ${d.device}`);
}
