import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { value } from '../helpers/prom.js';
import { REPO_ROOT } from '../helpers/tools.js';

const run = promisify(execFile);
const CLI = [process.execPath, '--import', 'tsx', 'src/cli.ts'];

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(CLI[0]!, [...CLI.slice(1), ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A unix socket that forwards to the engine while `open`, and refuses connections while closed. */
class SwitchableEngine {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  constructor(readonly socketPath: string) {}
  async open(): Promise<void> {
    fs.rmSync(this.socketPath, { force: true });
    this.server = net.createServer((client) => {
      const engine = net.connect('/var/run/docker.sock');
      this.sockets.add(client).add(engine);
      client.pipe(engine).pipe(client);
      const close = (): void => {
        client.destroy();
        engine.destroy();
      };
      client.on('error', close).on('close', close);
      engine.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.socketPath, resolve));
  }
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
    fs.rmSync(this.socketPath, { force: true });
  }
}

describe('command line', () => {
  it('exits 2 with one line naming the flag on a bad flag or value', async () => {
    for (const [args, text] of [
      [['--no-such-flag'], "unknown option '--no-such-flag'"],
      [['--docker.timeout', 'forever'], '--docker.timeout: invalid duration "forever"'],
      [['--stats.mode', 'push'], '--stats.mode: "push" is not one of stream, poll'],
      [['--df.interval', '30d'], '--df.interval: "30d" is longer than the 2147483647 ms (about 24.8 days) a timer can hold'],
      [['--web.telemetry-path', '/:x'], '--web.telemetry-path: "/:x" is not a plain path'],
      [['--web.telemetry-path', '/(.*)'], '--web.telemetry-path: "/(.*)" is not a plain path'],
    ] as const) {
      const { code, stdout, stderr } = await cli([...args]);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(stderr.startsWith(`docker-exporter: ${text}`)).toBe(true);
    }
    const fromEnv = await cli([], { DOCKER_EXPORTER_WEB_LISTEN_ADDRESS: 'nowhere' });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain('--web.listen-address: "nowhere" is not [host]:port');
  });

  it('prints --version and --help and exits 0', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(await cli(['--version'])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--web.telemetry-path');
    expect(help.stdout).toContain('--no-collector.df');
  });
});

describe('engine away and back', () => {
  let exporter: RunningExporter | undefined;
  let engine: SwitchableEngine | undefined;
  afterEach(async () => {
    await exporter?.stop();
    await engine?.close();
  });

  it('starts without an engine, reports docker_up 0, and recovers by itself when it appears', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dx-cli-'));
    engine = new SwitchableEngine(path.join(dir, 'docker.sock'));
    exporter = await startExporter(['--docker.host', `unix://${engine.socketPath}`, '--no-collector.df', '--no-collector.stats']);
    let samples = await exporter.samples();
    expect(value(samples, 'docker_up')).toBe(0);
    expect(value(samples, 'docker_exporter_collector_success', { collector: 'engine' })).toBe(0);
    expect((await fetch(exporter.url + '/readyz')).status).toBe(503);
    expect((await fetch(exporter.url + '/healthz')).status).toBe(200);

    await engine.open();
    samples = await waitFor('docker_up 1', async () => {
      const s = await exporter!.samples();
      return value(s, 'docker_up') === 1 ? s : undefined;
    });
    expect(value(samples, 'docker_engine_cpus')).toBe(os.cpus().length);
    expect((await fetch(exporter.url + '/readyz')).status).toBe(200);

    // Gone again: the very next scrape says so, and the process stays up.
    await engine.close();
    samples = await exporter.samples();
    expect(value(samples, 'docker_up')).toBe(0);
    expect(value(samples, 'docker_engine_cpus')).toBeUndefined();
    expect(exporter.proc.exitCode).toBeNull();
    expect(exporter.logs.some((l) => /collector failed/.test(l) && /engine/.test(l))).toBe(true);

    await engine.open();
    await waitFor('docker_up 1 again', async () => value(await exporter!.samples(), 'docker_up') === 1);
  });

  it('stops on SIGTERM and on SIGINT with exit 0 within 5 s', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      exporter = await startExporter([]);
      await exporter.scrape();
      const started = Date.now();
      expect(await exporter.stop(signal)).toBe(0);
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });
});
