import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EarlyExit } from '../../src/config.js';
import { buildConfig } from '../helpers/config.js';
import { REPO_ROOT, requireTool } from '../helpers/tools.js';

const UNIT = path.join(REPO_ROOT, 'docker-exporter.service');
const ENV_EXAMPLE = path.join(REPO_ROOT, 'deploy/systemd/docker-exporter.default');
const DOC = path.join(REPO_ROOT, 'README.md');

/** The unit's directives, section → key → values (a key may repeat, as SystemCallFilter= does). */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const sections: Record<string, Record<string, string[]>> = {};
  let current: Record<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = sections[section[1]!] = {};
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq < 0) throw new Error(`not a unit file line: ${raw}`);
    (current[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return sections;
}

/** systemd-analyze, with status and both outputs (verify warns on stderr and still exits 0). */
function analyze(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(requireTool('systemd-analyze', 'systemd'), args, { encoding: 'utf8', timeout: 60_000, cwd: os.tmpdir() });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('docker-exporter.service', () => {
  const unit = parseUnit(fs.readFileSync(UNIT, 'utf8'));
  const service = unit.Service!;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dx-unit-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** The unit with ExecStart pointed at an executable that exists here, since verify checks that. */
  function verifiable(edit: (text: string) => string = (t) => t): string {
    const stub = path.join(tmp, 'docker-exporter');
    fs.writeFileSync(stub, '#!/bin/sh\n', { mode: 0o755 });
    const file = path.join(tmp, `docker-exporter-${Math.random().toString(36).slice(2, 8)}.service`);
    fs.writeFileSync(file, edit(fs.readFileSync(UNIT, 'utf8').replace(/^ExecStart=\/usr\/local\/bin\/docker-exporter$/m, `ExecStart=${stub}`)));
    return file;
  }

  it('runs the installed command as its own user with the docker group, restarting on failure after docker', () => {
    expect(service.ExecStart).toEqual(['/usr/local/bin/docker-exporter']);
    expect(service.User).toEqual(['docker-exporter']);
    expect(service.Group).toEqual(['docker-exporter']);
    expect(service.SupplementaryGroups).toEqual(['docker']);
    expect(service.Restart).toEqual(['on-failure']);
    expect(service.EnvironmentFile).toEqual(['-/etc/default/docker-exporter']);
    expect(service.ExecReload).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(unit.Unit!.After![0]!.split(' ')).toContain('docker.service');
    expect(unit.Unit!.Wants![0]!.split(' ')).toContain('docker.service');
    expect(unit.Install!.WantedBy).toEqual(['multi-user.target']);
  });

  it('turns on the sandboxing the issue asks for', () => {
    const want: Record<string, string> = {
      NoNewPrivileges: 'yes', ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes', PrivateDevices: 'yes',
      ProtectKernelTunables: 'yes', ProtectKernelModules: 'yes', ProtectKernelLogs: 'yes', ProtectControlGroups: 'yes',
      RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6', CapabilityBoundingSet: '', AmbientCapabilities: '',
      RestrictNamespaces: 'yes', RestrictSUIDSGID: 'yes', LockPersonality: 'yes', SystemCallArchitectures: 'native',
    };
    for (const [key, value] of Object.entries(want)) expect(service[key], key).toEqual([value]);
    expect(service.SystemCallFilter![0]).toBe('@system-service');
    // V8 needs writable executable memory: this one would stop the exporter from starting.
    expect(service.MemoryDenyWriteExecute).toBeUndefined();
  });

  it('passes systemd-analyze verify with nothing to say, and verify does catch a mistake', () => {
    const good = analyze(['verify', verifiable()]);
    expect(good.stderr + good.stdout).toBe('');
    expect(good.status).toBe(0);
    // The check above can fail: a misspelt key is reported (on stderr, with status 0).
    const bad = analyze(['verify', verifiable((t) => t.replace('ProtectHome=yes', 'ProtectHme=yes'))]);
    expect(bad.stderr).toMatch(/Unknown key 'ProtectHme'/);
  });

  it('has the systemd-analyze security exposure the README quotes', () => {
    const r = analyze(['security', '--offline=yes', '--no-pager', UNIT]);
    const measured = /Overall exposure level for docker-exporter\.service: (\d+\.\d+) (\S+)/.exec(r.stdout + r.stderr);
    expect(measured, r.stdout + r.stderr).not.toBeNull();
    const quoted = /Overall exposure level for docker-exporter\.service: (\d+\.\d+) (\S+)/.exec(fs.readFileSync(DOC, 'utf8'));
    expect(quoted, `${DOC} quotes the score`).not.toBeNull();
    expect(`${measured![1]} ${measured![2]}`).toBe(`${quoted![1]} ${quoted![2]}`);
    expect(Number(measured![1])).toBeLessThan(2);
  });
});

describe('deploy/systemd/docker-exporter.default', () => {
  const text = fs.readFileSync(ENV_EXAMPLE, 'utf8');
  const help = (() => {
    try {
      buildConfig(['--help'], {});
    } catch (err) {
      if (err instanceof EarlyExit) return err.output;
      throw err;
    }
    throw new Error('--help did not exit');
  })();

  it('names only variables the exporter reads', () => {
    const named = [...text.matchAll(/^#?(DOCKER_EXPORTER_[A-Z_]+)=/gm)].map((m) => m[1]!);
    expect(named.length).toBeGreaterThan(10);
    // --help lists each flag's variable, possibly wrapped across lines.
    const known = new Set([...help.replace(/\s+/g, ' ').matchAll(/env: (DOCKER_EXPORTER_[A-Z_]+)/g)].map((m) => m[1]!));
    for (const name of named) expect(known, name).toContain(name);
  });

  it('is a valid configuration as shipped, and with every commented setting turned on', () => {
    const env = (withComments: boolean): Record<string, string> =>
      Object.fromEntries(
        text.split('\n')
          .map((l) => (withComments ? l.replace(/^#(?=DOCKER_EXPORTER_)/, '') : l))
          .filter((l) => /^DOCKER_EXPORTER_[A-Z_]+=/.test(l))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
    expect(buildConfig([], env(false)).web.listenPort).toBe(9764);
    const all = buildConfig([], env(true));
    expect(all.docker.host).toBe('tcp://docker-01.example.com:2376');
    expect(all.docker.tlsVerify).toBe(true);
  });
});
