import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  parseBlkio,
  parseCgroupLimit,
  parseCgroupValue,
  parseIoStat,
  parseKeyed,
  parseNetDev,
  parsePressure,
  parseProcCgroup,
  type Tally,
} from '../../src/parse/cgroup.js';
import type { BlkioSample } from '../../src/parse/stats.js';

const DIR = new URL('../fixtures/cgroup/', import.meta.url).pathname;
const V1_ID = 'b6456aaf99ede83f69f597021eb432ceed47885126047fb9e6b8799f3070d9b0';

/** A file of the recorded cgroup v1 container (test/fixtures/cgroup/v1-cgroupfs). */
function recorded(controller: string, file: string): string {
  return fs.readFileSync(path.join(DIR, 'v1-cgroupfs/sys/fs/cgroup', controller, 'docker', V1_ID, file), 'utf8');
}

function tally(): Tally {
  return { malformed: 0 };
}

describe('parseProcCgroup', () => {
  it('reads every hierarchy of a hybrid host (recorded: cgroupfs driver, cpu and cpuacct mounted apart)', () => {
    const p = parseProcCgroup(fs.readFileSync(path.join(DIR, 'v1-cgroupfs/proc/29366/cgroup'), 'utf8'));
    expect(p?.unified).toBe(`/docker/${V1_ID}`);
    for (const c of ['cpu', 'cpuacct', 'memory', 'pids', 'blkio', 'name=systemd']) expect(p?.v1.get(c), c).toEqual({ path: `/docker/${V1_ID}`, list: c });
  });

  it('keeps co-mounted controllers together, with their list as written', () => {
    const p = parseProcCgroup('8:cpu,cpuacct:/system.slice/docker-x.scope\n9:net_cls,net_prio:/\n1:name=systemd:/system.slice/docker-x.scope\n');
    expect(p?.unified).toBeUndefined();
    expect(p?.v1.get('cpu')).toEqual({ path: '/system.slice/docker-x.scope', list: 'cpu,cpuacct' });
    expect(p?.v1.get('cpuacct')).toBe(p?.v1.get('cpu'));
    expect(p?.v1.get('net_prio')?.path).toBe('/');
  });

  it('reads v2 (one 0:: line), with colons and spaces inside the path kept', () => {
    expect(parseProcCgroup('0::/system.slice/docker-x.scope\n')).toEqual({ unified: '/system.slice/docker-x.scope', v1: new Map() });
    expect(parseProcCgroup('0::/a:b/c d\n')?.unified).toBe('/a:b/c d');
    expect(parseProcCgroup('0::/docker/x (deleted)\n')?.unified).toBe('/docker/x (deleted)');
  });

  it('ignores lines it cannot use, and a last line without its newline', () => {
    expect(parseProcCgroup('')).toBeUndefined();
    expect(parseProcCgroup('garbage\n\n::/x\nx:cpu:/y\n1:cpu:relative\n')).toBeUndefined();
    expect(parseProcCgroup('0::/docker/ab')).toBeUndefined();
    const p = parseProcCgroup('4:memory:/docker/x\n0::/docker/x\n2:cpuacct:/dock');
    expect(p?.unified).toBe('/docker/x');
    expect([...(p?.v1.keys() ?? [])]).toEqual(['memory']);
  });
});

describe('parseCgroupValue and parseCgroupLimit', () => {
  it('read one unsigned integer and its newline (recorded files)', () => {
    expect(parseCgroupValue(recorded('cpuacct', 'cpuacct.usage'))).toBe(3074867321);
    expect(parseCgroupValue(recorded('memory', 'memory.usage_in_bytes'))).toBe(29409280);
    expect(parseCgroupLimit(recorded('pids', 'pids.max'))).toBe(100);
    expect(parseCgroupLimit('max\n')).toBeNull();
  });

  it('round past 2^53 as JSON.parse rounds the engine’s figure', () => {
    for (const digits of ['9007199254740993', '18446744073709551615', '123456789012345678', '9223372036854771712']) {
      expect(parseCgroupValue(`${digits}\n`)).toBe(JSON.parse(digits));
    }
  });

  it('count anything else once and give undefined: cut short, signed, empty, words, spaces', () => {
    for (const bad of ['123', '', '\n', '-1\n', '12a\n', ' 12\n', '12 \n', '1.5\n', 'max\n', '1\n2\n', '123456789012345678901\n']) {
      const t = tally();
      expect(parseCgroupValue(bad, t), JSON.stringify(bad)).toBeUndefined();
      expect(t.malformed, JSON.stringify(bad)).toBe(1);
    }
    const t = tally();
    expect(parseCgroupLimit('max', t)).toBeUndefined();
    expect(t.malformed).toBe(1);
  });
});

describe('parseKeyed', () => {
  const V1 = ['total_rss', 'total_cache', 'total_mapped_file', 'total_inactive_file', 'total_pgfault', 'total_pgmajfault'] as const;

  it('picks the wanted keys of a recorded memory.stat, whole names only (cache is not total_cache)', () => {
    const t = tally();
    expect(parseKeyed(recorded('memory', 'memory.stat'), V1, t)).toEqual({
      total_rss: 20123648,
      total_cache: 8388608,
      total_mapped_file: 0,
      total_inactive_file: 7340032,
      total_pgfault: 11348,
      total_pgmajfault: 0,
    });
    expect(parseKeyed('total_cache 5\ncache 7\n', ['cache'] as const)).toEqual({ cache: 7 });
    expect(t.malformed).toBe(0);
  });

  it('leaves a key the file does not have out without counting it (older kernels)', () => {
    const t = tally();
    expect(parseKeyed('usage_usec 10\nuser_usec 6\nsystem_usec 4\n', ['usage_usec', 'nr_periods'] as const, t)).toEqual({ usage_usec: 10 });
    expect(t.malformed).toBe(0);
  });

  it('counts a wanted key with a bad value, not other lines', () => {
    const t = tally();
    expect(parseKeyed('nr_periods 65\nnr_throttled sixty\nthrottled_time 3 4\n%%garbage%%\nnr_bursts x\n', ['nr_periods', 'nr_throttled', 'throttled_time'] as const, t)).toEqual({ nr_periods: 65 });
    expect(t.malformed).toBe(2);
  });

  it('in a file cut short, drops the partial line and counts every wanted key it lacks', () => {
    const text = recorded('memory', 'memory.stat');
    const cut = text.slice(0, text.indexOf('total_inactive_file') + 10);
    const t = tally();
    const got = parseKeyed(cut, V1, t);
    expect(got).toEqual({ total_rss: 20123648, total_cache: 8388608, total_mapped_file: 0, total_pgfault: 11348, total_pgmajfault: 0 });
    expect(t.malformed).toBe(1);
    const t2 = tally();
    expect(parseKeyed('user 286\nsystem 2', ['user', 'system'] as const, t2)).toEqual({ user: 286 });
    expect(t2.malformed).toBe(1);
    const t3 = tally();
    expect(parseKeyed('', ['user', 'system'] as const, t3)).toEqual({});
    expect(t3.malformed).toBe(2);
  });

  it('keeps the first of a repeated key', () => {
    expect(parseKeyed('user 1\nuser 2\n', ['user'] as const)).toEqual({ user: 1 });
  });
});

describe('parsePressure', () => {
  it('reads both totals (recorded, and the opencontainers/cgroups sample)', () => {
    const cpu = fs.readFileSync(path.join(DIR, 'v1-cgroupfs/sys/fs/cgroup/unified/docker', V1_ID, 'cpu.pressure'), 'utf8');
    expect(parsePressure(cpu)).toEqual({ some: 2809140, full: 2737706 });
    expect(parsePressure('some avg10=1.71 avg60=2.36 avg300=2.57 total=230548833\nfull avg10=1.00 avg60=1.01 avg300=1.00 total=157622356\n')).toEqual({ some: 230548833, full: 157622356 });
  });

  it('has no full for a cpu.pressure before Linux 5.13 (prometheus/procfs sample)', () => {
    const t = tally();
    expect(parsePressure('some avg10=0.10 avg60=2.00 avg300=3.85 total=15\n', t)).toEqual({ some: 15 });
    expect(t.malformed).toBe(0);
  });

  it('counts a bad total and a partial last line', () => {
    const t = tally();
    expect(parsePressure('some avg10=0.00 total=abc\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n', t)).toEqual({ full: 7 });
    expect(t.malformed).toBe(1);
    const t2 = tally();
    expect(parsePressure('some avg10=0.00 avg60=0.00 avg300=0.00 total=9\nfull avg10=0.0', t2)).toEqual({ some: 9 });
    expect(t2.malformed).toBe(1);
  });
});

describe('parseBlkio (cgroup v1)', () => {
  it('has no device for the recorded throttle files of a container that did no block I/O ("Total 0")', () => {
    const out: BlkioSample[] = [];
    const t = tally();
    parseBlkio(recorded('blkio', 'blkio.throttle.io_service_bytes'), out, 'readBytes', 'writeBytes', t);
    parseBlkio(recorded('blkio', 'blkio.throttle.io_serviced'), out, 'reads', 'writes', t);
    expect(out).toEqual([]);
    expect(t.malformed).toBe(0);
  });

  it('takes Read and Write per device (docker-py’s recorded figures), Sync/Async/Discard/Total ignored, devices in file order', () => {
    const out: BlkioSample[] = [];
    parseBlkio('8:0 Read 72843264\n8:0 Write 4096\n8:0 Sync 4096\n8:0 Async 72843264\n8:0 Discard 0\n8:0 Total 72847360\n253:0 Read 5\n253:0 Write 0\nTotal 72847365\n', out, 'readBytes', 'writeBytes');
    parseBlkio('8:0 Read 10581\n8:0 Write 1\n8:0 Total 10582\nTotal 10582\n', out, 'reads', 'writes');
    expect(out).toEqual([
      { device: '8:0', readBytes: 72843264, writeBytes: 4096, reads: 10581, writes: 1 },
      { device: '253:0', readBytes: 5, writeBytes: 0 },
    ]);
  });

  it('sums a device listed twice, as parseStats sums the engine’s entries', () => {
    const out: BlkioSample[] = [];
    parseBlkio('8:0 Read 1\n8:0 Read 2\n', out, 'readBytes', 'writeBytes');
    expect(out).toEqual([{ device: '8:0', readBytes: 3 }]);
  });

  it('reads `major:minor value` lines (no op) without a figure, and counts garbage and a partial line', () => {
    const out: BlkioSample[] = [];
    const t = tally();
    parseBlkio('8:0 4096\nx:0 Read 1\n8:y Read 1\n8:0 Read -1\n8:0 Write 12\n\n8:0 Rea', out, 'readBytes', 'writeBytes', t);
    expect(out).toEqual([{ device: '8:0', writeBytes: 12 }]);
    expect(t.malformed).toBe(5);
  });
});

describe('parseIoStat (cgroup v2)', () => {
  it('reads bytes and counts per device (opencontainers/cgroups fs2 sample)', () => {
    const out: BlkioSample[] = [];
    const t = tally();
    parseIoStat('254:1 rbytes=6901432320 wbytes=14245535744 rios=263278 wios=248603 dbytes=0 dios=0\n254:0 rbytes=2702336 wbytes=0 rios=97 wios=0 dbytes=0 dios=0\n', out, t);
    expect(out).toEqual([
      { device: '254:1', readBytes: 6901432320, writeBytes: 14245535744, reads: 263278, writes: 248603 },
      { device: '254:0', readBytes: 2702336, writeBytes: 0, reads: 97, writes: 0 },
    ]);
    expect(t.malformed).toBe(0);
  });

  it('skips iocost’s cost.* keys, makes a missing key 0 as containerd does, and reads an empty file as no device', () => {
    const out: BlkioSample[] = [];
    const t = tally();
    parseIoStat('259:0 rbytes=4085926524416 wbytes=1036680064512 cost.vrate=100.00 cost.usage=1532009788\n', out, t);
    expect(out).toEqual([{ device: '259:0', readBytes: 4085926524416, writeBytes: 1036680064512, reads: 0, writes: 0 }]);
    expect(t.malformed).toBe(0);
    const none: BlkioSample[] = [];
    parseIoStat('', none, t);
    expect(none).toEqual([]);
    expect(t.malformed).toBe(0);
  });

  it('counts a bad value (left out), a bad device and a partial line', () => {
    const out: BlkioSample[] = [];
    const t = tally();
    parseIoStat('8:0 rbytes=x wbytes=5 rios=1 wios=2\nsda rbytes=1\n8:16\n8:32 rbytes=1 wby', out, t);
    expect(out).toEqual([{ device: '8:0', writeBytes: 5, reads: 1, writes: 2 }]);
    expect(t.malformed).toBe(4);
  });
});

describe('parseNetDev', () => {
  it('reads every interface of a recorded /proc/<pid>/net/dev, in file order', () => {
    const t = tally();
    const got = parseNetDev(fs.readFileSync(path.join(DIR, 'v1-cgroupfs/proc/29366/net/dev'), 'utf8'), t);
    expect(got).toEqual([
      { name: 'lo', rxBytes: 0, rxPackets: 0, rxDropped: 0, rxErrors: 0, txBytes: 0, txPackets: 0, txDropped: 0, txErrors: 0 },
      { name: 'eth0', rxBytes: 806, rxPackets: 9, rxDropped: 0, rxErrors: 0, txBytes: 0, txPackets: 0, txDropped: 0, txErrors: 0 },
    ]);
    expect(t.malformed).toBe(0);
  });

  it('maps the columns: errs, drop of each direction (not fifo, frame, colls, …)', () => {
    const line = 'veth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n';
    expect(parseNetDev(`h1\nh2\n${line}`)).toEqual([{ name: 'veth0', rxBytes: 1, rxPackets: 2, rxErrors: 3, rxDropped: 4, txBytes: 9, txPackets: 10, txErrors: 11, txDropped: 12 }]);
  });

  it('reads counters too wide for their column (no space after the colon) and past 2^53', () => {
    const got = parseNetDev('h1\nh2\n  eth0:874354587 1036395 0 0 0 0 0 0 18446744073709551615 1 0 0 0 0 0 0\n');
    expect(got[0]?.rxBytes).toBe(874354587);
    expect(got[0]?.txBytes).toBe(JSON.parse('18446744073709551615'));
  });

  it('counts a line with too few or bad counters and a partial last line; the headers are not counted', () => {
    const t = tally();
    expect(parseNetDev('Inter-|   Receive\n face |bytes\n  eth0: 1 2 3\n  eth1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\nnonsense\n  eth2: 1 2 3', t)).toEqual([]);
    expect(t.malformed).toBe(4);
    const t2 = tally();
    expect(parseNetDev('Inter-|\n face |\n', t2)).toEqual([]);
    expect(t2.malformed).toBe(0);
  });
});

describe('every parser on damaged recorded files', () => {
  const files: string[] = [];
  (function walk(dir: string) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !e.name.endsWith('.json') && !e.name.endsWith('.md')) files.push(p);
    }
  })(DIR);

  it('never throws nor yields a negative or non-finite figure, for every prefix and byte flip of every fixture file', () => {
    const keys = ['user', 'system', 'nr_periods', 'total_rss', 'anon', 'usage_usec'] as const;
    let cases = 0;
    for (const file of files) {
      const text = fs.readFileSync(file, 'utf8');
      const variants: string[] = [];
      for (let i = 0; i <= text.length; i += Math.max(1, Math.floor(text.length / 40))) variants.push(text.slice(0, i));
      for (let i = 0; i < text.length; i += Math.max(1, Math.floor(text.length / 20))) {
        for (const c of ['\n', ' ', ':', '=', 'x', '-', '\u0000', '9']) variants.push(text.slice(0, i) + c + text.slice(i + 1));
      }
      for (const v of variants) {
        cases++;
        const t = tally();
        const numbers: unknown[] = [];
        numbers.push(parseCgroupValue(v, t), parseCgroupLimit(v, t));
        numbers.push(...Object.values(parseKeyed(v, keys, t)), ...Object.values(parsePressure(v, t)));
        const blk: BlkioSample[] = [];
        parseBlkio(v, blk, 'readBytes', 'writeBytes', t);
        parseIoStat(v, blk, t);
        for (const d of blk) numbers.push(d.readBytes, d.writeBytes, d.reads, d.writes);
        for (const n of parseNetDev(v, t)) numbers.push(n.rxBytes, n.rxPackets, n.rxDropped, n.rxErrors, n.txBytes, n.txPackets, n.txDropped, n.txErrors);
        parseProcCgroup(v);
        for (const n of numbers) if (n !== undefined && n !== null && !(typeof n === 'number' && Number.isFinite(n) && n >= 0)) throw new Error(`${file}: ${String(n)} from ${JSON.stringify(v.slice(-40))}`);
        expect(Number.isInteger(t.malformed) && t.malformed >= 0).toBe(true);
      }
    }
    expect(cases).toBeGreaterThan(5_000);
  });
});
