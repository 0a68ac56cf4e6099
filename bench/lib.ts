import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Repository root, whatever the cwd. */
export const REPO_ROOT = new URL('..', import.meta.url).pathname.replace(/\/$/, '');

/** The local image every bench container runs (never pulled: scripts/test-engine.sh imports it). */
export const BENCH_IMAGE = process.env.TEST_IMAGE ?? 'docker-exporter-test/busybox:latest';

/** The label every test object carries, so leftovers of any run can be found. */
export const TEST_LABEL = 'docker-exporter-test=1';

/** The real engine's socket: DOCKER_HOST's path when it is a unix:// address, else Docker's default. */
export const ENGINE_SOCKET = (process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').replace(/^unix:\/\//, '');

/** Runs the docker CLI; resolves with trimmed stdout, rejects with its stderr. */
export async function docker(args: string[], timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await run('docker', args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`docker ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** GET over a unix socket, the whole body. */
export function socketGet(socketPath: string, path: string, timeoutMs = 30_000, agent?: http.Agent): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path, timeout: timeoutMs, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** GET a stream over a unix socket and collect its first `count` lines (or what came in `timeoutMs`). */
export function socketLines(socketPath: string, path: string, count: number, timeoutMs: number): Promise<{ lines: string[]; atMs: number[]; headers: http.IncomingHttpHeaders; status: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const lines: string[] = [];
    const atMs: number[] = [];
    let headers: http.IncomingHttpHeaders = {};
    let status = 0;
    const done = (): void => {
      clearTimeout(timer);
      req.destroy();
      resolve({ lines, atMs, headers, status });
    };
    const timer = setTimeout(done, timeoutMs);
    const req = http.get({ socketPath, path }, (res) => {
      headers = res.headers;
      status = res.statusCode ?? 0;
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim() === '') continue;
          lines.push(line);
          atMs.push(performance.now() - started);
          if (lines.length >= count) return done();
        }
      });
      res.on('end', done);
      res.on('error', () => done());
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      if (lines.length > 0 || status > 0) resolve({ lines, atMs, headers, status });
      else reject(err);
    });
  });
}

/** The p-th percentile (0–100) by nearest rank; NaN for no values. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Median (mean of the two middle values for an even count); NaN for no values. */
export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on every Linux we run on). */
export const CLK_TCK = 100;

/** utime + stime of a process in seconds, or undefined once it is gone. */
export function cpuSecondsOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields count from its closing ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / CLK_TCK;
}

/** VmRSS of a process in bytes, or undefined once it is gone. */
export function rssBytesOf(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface ProcInfo {
  pid: number;
  comm: string;
  args: string;
}

/** Every process on the host with its command name and arguments. */
export function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      const args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      out.push({ pid: Number(entry), comm, args });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** The Node.js flag the shipped launchers (`npm start`, Dockerfile, systemd unit) run the exporter with. */
export const NODE_FLAGS = '--max-semi-space-size=2';
