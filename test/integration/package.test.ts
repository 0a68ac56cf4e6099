import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, TEST_LABEL, waitFor } from '../helpers/docker.js';
import { startExporter } from '../helpers/exporter.js';
import { findAll, value } from '../helpers/prom.js';
import { REPO_ROOT } from '../helpers/tools.js';

const run = promisify(execFile);
const pkg = JSON.parse(fs.readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { name: string; version: string };

async function sh(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd: opts.cwd ?? REPO_ROOT, timeout: opts.timeoutMs ?? 300_000, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.slice(-4000) || e.message}`);
  }
}

/** What may ship: the compiled code, the unit and its settings example, and npm's own files. */
function allowedInPackage(file: string): boolean {
  return (
    file.startsWith('dist/') ||
    ['package.json', 'README.md', 'docker-exporter.service', 'deploy/systemd/docker-exporter.default'].includes(file) ||
    /^(LICEN[CS]E|NOTICE|CHANGELOG)(\.\w+)?$/i.test(file)
  );
}

describe('the npm package, packed, installed globally and run from its install', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dx-package-'));
  const prefix = path.join(tmp, 'prefix');
  const bin = path.join(prefix, 'bin', 'docker-exporter');
  let tarball = '';
  let packed: string[] = [];
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    let t = Date.now();
    // Runs prepack (the build) first; its output goes to stderr, the JSON to stdout.
    const [info] = JSON.parse(await sh('npm', ['pack', '--json', '--pack-destination', tmp])) as { filename: string; files: { path: string }[] }[];
    tarball = path.join(tmp, info!.filename);
    packed = info!.files.map((f) => f.path);
    timings.pack = Date.now() - t;
    t = Date.now();
    // --prefer-offline: the registry is only asked for what npm's cache lacks.
    await sh('npm', ['install', '-g', '--prefix', prefix, tarball, '--no-audit', '--no-fund', '--prefer-offline'], { cwd: tmp, timeoutMs: 600_000 });
    timings.install = Date.now() - t;
  }, 900_000);

  afterAll(() => {
    console.log(`npm pack ${(timings.pack! / 1000).toFixed(1)} s, npm install -g ${(timings.install! / 1000).toFixed(1)} s`);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('holds only what it needs: no sources, tests or node_modules', async () => {
    const [dry] = JSON.parse(await sh('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'])) as { files: { path: string }[] }[];
    const listed = dry!.files.map((f) => f.path).sort();
    expect(listed).toEqual([...packed].sort());
    expect(listed.filter((f) => !allowedInPackage(f))).toEqual([]);
    expect(listed).toEqual(expect.arrayContaining(['package.json', 'dist/cli.js', 'docker-exporter.service', 'deploy/systemd/docker-exporter.default']));
    // Every compiled module is there, and nothing compiled from outside src/.
    const compiled = execFileSync('find', ['src', '-name', '*.ts', '!', '-name', '*.d.ts'], { cwd: REPO_ROOT, encoding: 'utf8' })
      .split('\n').filter(Boolean).map((f) => f.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'));
    expect(listed).toEqual(expect.arrayContaining(compiled));
  });

  it('installs a docker-exporter command with production dependencies only', () => {
    expect(fs.realpathSync(bin)).toBe(path.join(prefix, 'lib/node_modules', pkg.name, 'dist/cli.js'));
    const mods = fs.readdirSync(path.join(prefix, 'lib/node_modules', pkg.name, 'node_modules'));
    expect(mods).toEqual(expect.arrayContaining(['dockerode', 'express', 'prom-client']));
    for (const dev of ['typescript', 'vitest', 'tsx']) expect(mods).not.toContain(dev);
  });

  it('answers --version and --help', async () => {
    expect(await sh(bin, ['--version'], { cwd: tmp })).toBe(`${pkg.version}\n`);
    const help = await sh(bin, ['--help'], { cwd: tmp });
    expect(help).toMatch(/^Usage: docker-exporter \[options\]/);
    expect(help).toContain('--docker.host <url>');
  });

  it('runs against the real engine: docker_up 1, every collector succeeding; SIGTERM ends it with 0 within 5 s', async () => {
    const exporter = await startExporter(['--stats.interval', '2s', '--df.interval', '2s'], { command: [bin] });
    try {
      const started = JSON.parse(exporter.logs.find((l) => l.includes('"starting docker-exporter"'))!) as { collectors: string[]; version: string };
      expect(started.version).toBe(pkg.version);
      expect(started.collectors).toContain('engine');
      const samples = await waitFor('every collector to succeed', async () => {
        const s = await exporter.samples();
        const ok = findAll(s, 'docker_exporter_collector_success');
        return ok.length === started.collectors.length && ok.every((x) => x.value === 1) ? s : undefined;
      }, 60_000, 500);
      expect(value(samples, 'docker_up')).toBe(1);
      expect(findAll(samples, 'docker_exporter_build_info')[0]!.labels.version).toBe(pkg.version);
    } finally {
      const t0 = Date.now();
      const code = await exporter.stop('SIGTERM');
      expect(code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5000);
    }
  });

  /**
   * The README's systemd steps, followed in a Debian container with systemd as PID 1: proves the
   * unit's user, group and sandboxing leave the exporter working. Building that image takes minutes
   * (debootstrap), so this runs where it exists or when DOCKER_EXPORTER_TEST_SYSTEMD=1 asks to build it.
   */
  const SYSTEMD_IMAGE = process.env.SYSTEMD_TEST_IMAGE ?? 'docker-exporter-test/systemd:local';
  const haveImage = ((): boolean => {
    try {
      execFileSync('docker', ['image', 'inspect', SYSTEMD_IMAGE], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  describe.skipIf(!haveImage && process.env.DOCKER_EXPORTER_TEST_SYSTEMD !== '1')('as a systemd service (docker-exporter.service)', () => {
    const name = `dx-systemd-${process.pid}`;
    const exec = (cmd: string): Promise<string> => docker(['exec', name, 'sh', '-c', cmd]);
    const metricsInside = (port: number): Promise<string> =>
      exec(`node -e 'fetch("http://127.0.0.1:${port}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))'`);

    beforeAll(async () => {
      await sh('bash', [`${REPO_ROOT}/scripts/systemd-test-image.sh`], { timeoutMs: 1_200_000 });
      const gid = fs.statSync('/var/run/docker.sock').gid;
      // systemd as PID 1 needs to mount and manage its cgroups; the socket goes to /run, which
      // the tmpfs would otherwise hide (/var/run is a link to /run).
      await docker([
        'run', '-d', '--name', name, '--label', TEST_LABEL,
        '--cap-add', 'SYS_ADMIN', '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined',
        '--tmpfs', '/run', '--tmpfs', '/run/lock', '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw', '--cgroupns', 'host',
        '-v', '/var/run/docker.sock:/run/docker.sock', SYSTEMD_IMAGE,
      ]);
      await waitFor('systemd to finish booting', async () => /^(running|degraded)$/.test((await exec('systemctl is-system-running || true')).trim()), 60_000, 500);
      // A host "with only Node.js": this machine's node, and the tree `npm install -g --prefix
      // /usr/local <tarball>` produced above.
      await docker(['cp', process.execPath, `${name}:/usr/local/bin/node`]);
      await exec('mkdir -p /usr/local/lib/node_modules');
      await docker(['cp', path.join(prefix, 'lib/node_modules', pkg.name), `${name}:/usr/local/lib/node_modules/`]);
      await exec(`ln -s ../lib/node_modules/${pkg.name}/dist/cli.js /usr/local/bin/docker-exporter`);
      // The engine's group, as the docker package creates it (with the socket's gid here).
      await exec(`groupadd -o -g ${gid} docker`);
      // The README's steps, verbatim.
      const d = `/usr/local/lib/node_modules/${pkg.name}`;
      await exec('useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin docker-exporter');
      await exec(`install -m 0644 ${d}/deploy/systemd/docker-exporter.default /etc/default/docker-exporter`);
      await exec(`install -m 0644 ${d}/docker-exporter.service /etc/systemd/system/docker-exporter.service`);
      // A setting only the environment file gives, to show it is read.
      await exec(`sed -i 's/^DOCKER_EXPORTER_WEB_LISTEN_ADDRESS=.*/DOCKER_EXPORTER_WEB_LISTEN_ADDRESS=:9765/' /etc/default/docker-exporter`);
      await exec('echo DOCKER_EXPORTER_STATS_INTERVAL=2s >> /etc/default/docker-exporter');
      await exec('systemctl daemon-reload && systemctl enable --now docker-exporter');
    }, 1_500_000);

    afterAll(async () => {
      await docker(['rm', '-f', name]).catch(() => undefined);
    });

    it('runs sandboxed as docker-exporter with the docker group, and every collector succeeds', async () => {
      const text = await waitFor('the service to serve every collector', async () => {
        const t = await metricsInside(9765);
        return /^docker_up 1$/m.test(t) && !/^docker_exporter_collector_success\{.*\} 0$/m.test(t) ? t : undefined;
      }, 30_000, 500).catch(async (err: Error) => {
        throw new Error(`${err.message}\n${await exec('systemctl status --no-pager docker-exporter; journalctl -u docker-exporter --no-pager -n 20 -o cat').catch((e: Error) => e.message)}`);
      });
      expect(text).toMatch(/^docker_exporter_collector_success\{collector="engine"\} 1$/m);
      const pid = (await exec('systemctl show -p MainPID --value docker-exporter')).trim();
      const status = Object.fromEntries((await exec(`cat /proc/${pid}/status`)).split('\n').map((l) => l.split(/:\s*/, 2) as [string, string]));
      const uid = (await exec('id -u docker-exporter')).trim();
      expect(status.Uid!.split(/\s+/)[0]).toBe(uid);
      expect(status.Groups!.trim().split(/\s+/)).toContain(String(fs.statSync('/var/run/docker.sock').gid));
      expect(status.NoNewPrivs).toBe('1');
      expect(status.CapEff).toBe('0000000000000000');
      expect(status.CapBnd).toBe('0000000000000000');
      expect(status.Seccomp).toBe('2');
      // ProtectSystem=strict: the whole file system is read-only to it.
      expect(await exec(`grep -E '^[0-9]+ [0-9]+ [^ ]+ / / ro,' /proc/${pid}/mountinfo | wc -l`)).toBe('1');
    });

    it('reloads on systemctl reload without restarting, and stops cleanly within 5 s', async () => {
      const pid = (await exec('systemctl show -p MainPID --value docker-exporter')).trim();
      await exec('systemctl reload docker-exporter');
      await waitFor('the SIGHUP to be logged', async () => (await exec('journalctl -u docker-exporter --no-pager -o cat')).includes('"signal":"SIGHUP"'), 10_000, 250);
      expect((await exec('systemctl show -p MainPID --value docker-exporter')).trim()).toBe(pid);
      expect(await metricsInside(9765)).toMatch(/^docker_up 1$/m);
      const t0 = Date.now();
      await exec('systemctl stop docker-exporter');
      expect(Date.now() - t0).toBeLessThan(5000);
      expect((await exec('systemctl show -p Result,ExecMainStatus docker-exporter')).trim().split('\n').sort()).toEqual(['ExecMainStatus=0', 'Result=success']);
    });
  });
});
