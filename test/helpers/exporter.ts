import { spawn, type ChildProcess } from 'node:child_process';
import { REPO_ROOT } from './tools.js';
import { parseMetrics, type Sample } from './prom.js';

export interface RunningExporter {
  url: string;
  port: number;
  pid: number;
  proc: ChildProcess;
  /** Every stdout/stderr line so far (JSON log lines unless --log.format pretty). */
  logs: string[];
  /** GET the telemetry path; throws on a non-200 answer. */
  scrape(path?: string): Promise<string>;
  /** scrape() parsed into samples. */
  samples(): Promise<Sample[]>;
  /** Sends a signal (default SIGTERM) and resolves with the exit code (null when killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves when the process exits on its own. */
  exited: Promise<number | null>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Command to run instead of the source tree (e.g. an installed `docker-exporter`). */
  command?: string[];
  /** Wait for the "listening" log line at most this long. */
  timeoutMs?: number;
}

/** Every exporter started by a test file, so a failing test cannot leave one running. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * Starts the real exporter as its own process on a free loopback port (`--web.listen-address
 * 127.0.0.1:0` unless args give one) and resolves once it listens.
 */
export async function startExporter(args: string[] = [], opts: StartOptions = {}): Promise<RunningExporter> {
  const listen = args.some((a) => a.startsWith('--web.listen-address')) ? [] : ['--web.listen-address', '127.0.0.1:0'];
  const command = opts.command ?? [process.execPath, '--import', 'tsx', 'src/cli.ts'];
  const proc = spawn(command[0]!, [...command.slice(1), ...listen, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => {
    proc.on('exit', (code) => {
      running.delete(proc);
      resolve(code);
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`exporter did not listen within ${opts.timeoutMs ?? 20_000} ms:\n${logs.join('\n')}`)), opts.timeoutMs ?? 20_000);
    const onLine = (line: string): void => {
      logs.push(line);
      const m = /"msg":"listening"/.test(line) ? /"port":(\d+)/.exec(line) : null;
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    for (const stream of [proc.stdout!, proc.stderr!]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      });
    }
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exporter exited with ${code} before listening:\n${logs.join('\n')}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const scrape = async (path = '/metrics'): Promise<string> => {
    const res = await fetch(url + path);
    const body = await res.text();
    if (res.status !== 200) throw new Error(`GET ${path}: HTTP ${res.status}: ${body}`);
    return body;
  };
  return {
    url,
    port,
    pid: proc.pid!,
    proc,
    logs,
    scrape,
    samples: async () => parseMetrics(await scrape()),
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
