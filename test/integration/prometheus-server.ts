import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { waitFor } from '../helpers/docker.js';
import { requireTool } from '../helpers/tools.js';

/** A free loopback port (for a moment: good enough for one test process). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

interface Target {
  scrapeUrl: string;
  health: string;
  lastError: string;
  labels: Record<string, string>;
}

export interface RunningPrometheus {
  url: string;
  /** Instant query; resolves with the result vector. */
  query(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  activeTargets(): Promise<Target[]>;
  logs: string[];
  stop(): Promise<void>;
}

/**
 * Runs Debian's Prometheus on one of the repository's configuration files, made fast for a test:
 * scrape every second and refresh service discovery every second, everything else as shipped.
 */
export async function startPrometheus(configFile: string): Promise<RunningPrometheus> {
  const bin = requireTool('prometheus', 'prometheus');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dx-prometheus-'));
  const config = YAML.parse(fs.readFileSync(configFile, 'utf8')) as {
    global?: Record<string, unknown>;
    scrape_configs: Record<string, unknown>[];
  };
  config.global = { ...config.global, scrape_interval: '1s', evaluation_interval: '1s' };
  for (const job of config.scrape_configs) {
    for (const key of Object.keys(job).filter((k) => k.endsWith('_sd_configs'))) {
      for (const sd of job[key] as Record<string, unknown>[]) sd.refresh_interval = '1s';
    }
  }
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), YAML.stringify(config));
  const port = await freePort();
  const logs: string[] = [];
  const proc: ChildProcess = spawn(
    bin,
    [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const kill = (): void => void proc.kill('SIGKILL');
  process.once('exit', kill);
  proc.stdout!.on('data', (c: Buffer) => logs.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer) => logs.push(c.toString()));
  const url = `http://127.0.0.1:${port}`;
  await waitFor('prometheus to be ready', async () => {
    if (proc.exitCode !== null) throw new Error(`prometheus exited with ${proc.exitCode}: ${logs.join('')}`);
    return (await fetch(`${url}/-/ready`)).status === 200;
  }, 30_000, 250);
  const api = async <T>(p: string): Promise<T> => {
    const body = (await (await fetch(url + p)).json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${p}: ${body.error}`);
    return body.data;
  };
  return {
    url,
    logs,
    query: async (q) => (await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(q)}`)).result,
    activeTargets: async () => (await api<{ activeTargets: Target[] }>('/api/v1/targets?state=active')).activeTargets,
    async stop() {
      process.off('exit', kill);
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
