import type { BlkioSample, NetworkSample } from './stats.js';

// Pure parsers for the kernel's cgroup files and /proc/<pid>/{cgroup,net/dev}: a string in, values
// out, never a throw. The reading layer (src/stats/cgroup-files.ts) decides which files to read and
// turns the values into a StatsSample the way the engine would.
//
// Every file the kernel writes ends with a newline (seq_file `show` callbacks print whole lines), so
// text that does not is cut short: its last, partial line is not used, and a key that a whole file
// would have had counts as unusable. Formats: https://docs.kernel.org/admin-guide/cgroup-v2.html
// ("Interface Files", "Format") and https://docs.kernel.org/admin-guide/cgroup-v1/index.html.

/** Where a parser counts fields it found but could not use (a StatsSample is one). */
export interface Tally {
  malformed: number;
}

/** One line of `/proc/<pid>/cgroup` for a cgroup v1 hierarchy. */
export interface V1Hierarchy {
  /** The cgroup's path inside that hierarchy, as the kernel wrote it. */
  path: string;
  /** The hierarchy's controllers as written (`cpu,cpuacct`), the usual name of its mount directory. */
  list: string;
}

/** What `/proc/<pid>/cgroup` says about a process. */
export interface ProcCgroup {
  /** Its path in the unified (v2) hierarchy, from the `0::` line; undefined without one. */
  unified?: string;
  /** Its v1 hierarchies by controller (`cpu`, `cpuacct`, `memory`, … and `name=systemd`). */
  v1: Map<string, V1Hierarchy>;
}

/** Summed stall times of one `*.pressure` file, in microseconds (`total=`). */
export interface Pressure {
  /** Some tasks stalled (cAdvisor's "waiting"). */
  some?: number;
  /** All non-idle tasks stalled at once (cAdvisor's "stalled"); `cpu.pressure` has it from Linux 5.13. */
  full?: number;
}

const NO_TALLY: Tally = { malformed: 0 };

/**
 * Parses `/proc/<pid>/cgroup` (`hierarchy-id:controller-list:path` per line; v2 is `0::path`, a
 * hybrid host has both kinds). Undefined when no line is usable. See proc(5), /proc/pid/cgroup.
 */
export function parseProcCgroup(text: string): ProcCgroup | undefined {
  const out: ProcCgroup = { v1: new Map() };
  let any = false;
  for (let i = 0; i < text.length; ) {
    const nl = text.indexOf('\n', i);
    // A line without its newline may be cut inside the path: not used.
    if (nl === -1) break;
    const first = text.indexOf(':', i);
    const second = first === -1 || first > nl ? -1 : text.indexOf(':', first + 1);
    if (second !== -1 && second < nl && digitsOnly(text, i, first) && text.charCodeAt(second + 1) === 47) {
      // The path is the rest of the line: cgroup names may themselves hold colons.
      const path = text.slice(second + 1, nl);
      if (second === first + 1) {
        if (first === i + 1 && text.charCodeAt(i) === 48) {
          out.unified = path;
          any = true;
        }
      } else {
        const h: V1Hierarchy = { path, list: text.slice(first + 1, second) };
        for (const c of h.list.split(',')) if (c !== '') out.v1.set(c, h);
        any = true;
      }
    }
    i = nl + 1;
  }
  return any ? out : undefined;
}

/** One unsigned integer and its newline (`memory.current`, `cpuacct.usage`, …); undefined (counted) otherwise. */
export function parseCgroupValue(text: string, tally: Tally = NO_TALLY): number | undefined {
  const v = text.endsWith('\n') ? uintAt(text, 0, text.length - 1) : undefined;
  if (v === undefined) tally.malformed++;
  return v;
}

/** A limit file (`pids.max`, `memory.max`): a number, null for `max` (no limit), undefined (counted) if unusable. */
export function parseCgroupLimit(text: string, tally: Tally = NO_TALLY): number | null | undefined {
  if (text === 'max\n') return null;
  return parseCgroupValue(text, tally);
}

/**
 * A flat keyed file (`key value` per line: `memory.stat`, `cpu.stat`, `cpuacct.stat`): the values of
 * `keys` (at most 31) found with an unsigned integer value. A wanted key whose value is not one is
 * counted; so is one missing from a file that was cut short. Other lines are not looked at.
 */
export function parseKeyed<K extends string>(text: string, keys: readonly K[], tally: Tally = NO_TALLY): Partial<Record<K, number>> {
  const out: Partial<Record<K, number>> = {};
  const complete = text.endsWith('\n');
  const end = complete ? text.length : text.lastIndexOf('\n') + 1;
  let seen = 0;
  for (let i = 0; i < end; ) {
    const nl = text.indexOf('\n', i);
    const sp = text.indexOf(' ', i);
    if (sp !== -1 && sp < nl) {
      for (let k = 0; k < keys.length; k++) {
        const key = keys[k]!;
        if (sp - i !== key.length || !text.startsWith(key, i)) continue;
        if ((seen & (1 << k)) === 0) {
          seen |= 1 << k;
          const v = uintAt(text, sp + 1, nl);
          if (v === undefined) tally.malformed++;
          else out[key] = v;
        }
        break;
      }
    }
    i = nl + 1;
  }
  if (!complete) for (let k = 0; k < keys.length; k++) if ((seen & (1 << k)) === 0) tally.malformed++;
  return out;
}

/**
 * A PSI file (`some avg10=… avg60=… avg300=… total=<µs>`, then `full …`): the two totals. A file
 * without `full` (cpu.pressure before Linux 5.13) has none; a partial last line is counted once. See https://docs.kernel.org/accounting/psi.html.
 */
export function parsePressure(text: string, tally: Tally = NO_TALLY): Pressure {
  const out: Pressure = {};
  const end = wholeLines(text, tally);
  for (let i = 0; i < end; ) {
    const nl = text.indexOf('\n', i);
    const kind = text.startsWith('some ', i) ? 'some' : text.startsWith('full ', i) ? 'full' : undefined;
    if (kind !== undefined && out[kind] === undefined) {
      const at = text.indexOf(' total=', i);
      const v = at !== -1 && at < nl ? uintAt(text, at + 7, nl) : undefined;
      if (v === undefined) tally.malformed++;
      else out[kind] = v;
    }
    i = nl + 1;
  }
  return out;
}

/**
 * Adds one cgroup v1 blkio list (`major:minor Op value` lines, a `Total value` line; ops Read, Write,
 * Sync, Async, Discard, Total) to per-device samples: Read and Write into `readKey` / `writeKey`,
 * summed per device in the order devices first appear, as parseStats sums the engine's lists.
 * An unusable line is counted and left out.
 */
export function parseBlkio(text: string, into: BlkioSample[], readKey: 'readBytes' | 'reads', writeKey: 'writeBytes' | 'writes', tally: Tally = NO_TALLY): void {
  const end = wholeLines(text, tally);
  for (let i = 0; i < end; ) {
    const nl = text.indexOf('\n', i);
    if (!text.startsWith('Total ', i)) {
      const colon = text.indexOf(':', i);
      const sp1 = text.indexOf(' ', i);
      const sp2 = sp1 === -1 ? -1 : text.indexOf(' ', sp1 + 1);
      const ok = colon > i && sp1 > colon && sp1 < nl && digitsOnly(text, i, colon) && digitsOnly(text, colon + 1, sp1);
      // `major:minor value` (no op: blkio.sectors, blkio.time) carries neither Read nor Write.
      if (!ok || sp2 === -1 || sp2 > nl) {
        if (!ok || uintAt(text, sp1 + 1, nl) === undefined) tally.malformed++;
      } else {
        const value = uintAt(text, sp2 + 1, nl);
        if (value === undefined) tally.malformed++;
        else {
          const key = tokenIs(text, sp1 + 1, sp2, 'Read') ? readKey : tokenIs(text, sp1 + 1, sp2, 'Write') ? writeKey : undefined;
          if (key !== undefined) add(device(into, text.slice(i, sp1)), key, value);
        }
      }
    }
    i = nl + 1;
  }
}

/**
 * Adds cgroup v2 `io.stat` (`major:minor rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…` per line)
 * to per-device samples: bytes and counts read and written. A key missing from a whole line is 0, as
 * containerd's reader makes it (cgroups v2 readIoStats); keys it does not know (`cost.*` of iocost) are
 * skipped; an unusable value is counted and left out.
 */
export function parseIoStat(text: string, into: BlkioSample[], tally: Tally = NO_TALLY): void {
  const end = wholeLines(text, tally);
  for (let i = 0; i < end; ) {
    const nl = text.indexOf('\n', i);
    const colon = text.indexOf(':', i);
    const sp = text.indexOf(' ', i);
    if (nl === i) {
      // An empty line: nothing to read.
    } else if (!(colon > i && sp > colon && sp < nl && digitsOnly(text, i, colon) && digitsOnly(text, colon + 1, sp))) {
      tally.malformed++;
    } else {
      const d = device(into, text.slice(i, sp));
      let rbytes: number | undefined = 0;
      let wbytes: number | undefined = 0;
      let rios: number | undefined = 0;
      let wios: number | undefined = 0;
      for (let j = sp + 1; j < nl; ) {
        let next = text.indexOf(' ', j);
        if (next === -1 || next > nl) next = nl;
        const eq = text.indexOf('=', j);
        if (eq !== -1 && eq < next) {
          const key = tokenIs(text, j, eq, 'rbytes') ? 0 : tokenIs(text, j, eq, 'wbytes') ? 1 : tokenIs(text, j, eq, 'rios') ? 2 : tokenIs(text, j, eq, 'wios') ? 3 : -1;
          if (key !== -1) {
            const v = uintAt(text, eq + 1, next);
            if (v === undefined) tally.malformed++;
            if (key === 0) rbytes = v;
            else if (key === 1) wbytes = v;
            else if (key === 2) rios = v;
            else wios = v;
          }
        }
        j = next + 1;
      }
      if (rbytes !== undefined) add(d, 'readBytes', rbytes);
      if (wbytes !== undefined) add(d, 'writeBytes', wbytes);
      if (rios !== undefined) add(d, 'reads', rios);
      if (wios !== undefined) add(d, 'writes', wios);
    }
    i = nl + 1;
  }
}

/**
 * Parses `/proc/<pid>/net/dev`: two header lines, then `name: ` and 16 counters per interface
 * (receive bytes packets errs drop fifo frame compressed multicast, transmit bytes packets errs drop
 * fifo colls carrier compressed). Every interface, in the file's order; an unusable line is counted.
 * The receive `drop` column is rx_dropped + rx_missed_errors
 * (https://github.com/torvalds/linux/blob/master/net/core/net-procfs.c, dev_seq_printf_stats).
 */
export function parseNetDev(text: string, tally: Tally = NO_TALLY): NetworkSample[] {
  const out: NetworkSample[] = [];
  const end = wholeLines(text, tally);
  const n = NET_DEV_COLUMNS;
  for (let i = 0, line = 0; i < end; line++) {
    const nl = text.indexOf('\n', i);
    const colon = text.indexOf(':', i);
    if (colon === -1 || colon > nl) {
      if (line > 1 && nl > i) tally.malformed++;
    } else {
      let j = colon + 1;
      let k = 0;
      for (; k < n.length && j < nl; k++) {
        while (text.charCodeAt(j) === 32) j++;
        let next = text.indexOf(' ', j);
        if (next === -1 || next > nl) next = nl;
        const v = uintAt(text, j, next);
        if (v === undefined) break;
        n[k] = v;
        j = next;
      }
      const name = text.slice(i, colon).trim();
      if (k < n.length || name === '') tally.malformed++;
      else {
        out.push({
          name,
          rxBytes: n[0],
          rxPackets: n[1],
          rxDropped: n[3],
          rxErrors: n[2],
          txBytes: n[8],
          txPackets: n[9],
          txDropped: n[11],
          txErrors: n[10],
        });
      }
    }
    i = nl + 1;
  }
  return out;
}

/** Scratch for parseNetDev's 16 columns (parsers never run concurrently: they do not await). */
const NET_DEV_COLUMNS: number[] = new Array<number>(16).fill(0);

/** The end of the last whole line; a partial last line is counted once. */
function wholeLines(text: string, tally: Tally): number {
  if (text.endsWith('\n') || text === '') return text.length;
  tally.malformed++;
  return text.lastIndexOf('\n') + 1;
}

/** `text[start, end)` as an unsigned decimal integer, or undefined if it is anything else. */
function uintAt(text: string, start: number, end: number): number | undefined {
  if (end <= start || end - start > 20) return undefined;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return undefined;
    v = v * 10 + d;
  }
  // Past 2^53 the running sum rounds at each step; Number() rounds once, as JSON.parse does the
  // engine's exact figure, so both sources give the same double.
  return end - start > 15 ? Number(text.slice(start, end)) : v;
}

function digitsOnly(text: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
  }
  return true;
}

function tokenIs(text: string, start: number, end: number, op: string): boolean {
  return end - start === op.length && text.startsWith(op, start);
}

function device(into: BlkioSample[], name: string): BlkioSample {
  for (const d of into) if (d.device === name) return d;
  const d: BlkioSample = { device: name };
  into.push(d);
  return d;
}

function add(d: BlkioSample, key: 'readBytes' | 'writeBytes' | 'reads' | 'writes', value: number): void {
  d[key] = (d[key] ?? 0) + value;
}
