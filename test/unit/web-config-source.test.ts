import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { loadWebConfig, WebConfigError, type WebConfig } from '../../src/web/web-config-file.js';
import { WebConfigSource, weakenings } from '../../src/web/web-config-source.js';
import { createWebMetrics } from '../../src/web/web-metrics.js';

const DIR = new URL('../fixtures/web-config/', import.meta.url).pathname;

describe('WebConfigSource (re-reading a running server\'s file)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  function workspace(): { dir: string; file: string; lines: Array<Record<string, unknown>>; logger: pino.Logger } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'web-config-'));
    dirs.push(dir);
    for (const f of ['server.crt', 'server.key', 'client-ca.crt']) fs.copyFileSync(path.join(DIR, f), path.join(dir, f));
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    return { dir, file: path.join(dir, 'web.yml'), lines, logger };
  }
  const users = fs.readFileSync(path.join(DIR, 'users.good.yml'), 'utf8');

  it('picks up a changed file, keeps the last good one when the file turns bad, and logs that once', () => {
    const { file, lines, logger } = workspace();
    fs.writeFileSync(file, 'http_server_config:\n  headers:\n    X-Frame-Options: deny\n');
    const source = new WebConfigSource(file, logger);
    const changes: WebConfig[] = [];
    source.on('change', (next) => changes.push(next));
    source.refresh();
    expect(changes).toHaveLength(0);

    fs.writeFileSync(file, users);
    source.refresh();
    expect(changes).toHaveLength(1);
    expect(source.current.users.size).toBe(2);
    expect(source.basicAuth.enabled).toBe(true);

    fs.writeFileSync(file, 'basic_auth_users:\n  prometheus: plaintext\n');
    source.refresh();
    source.refresh();
    fs.appendFileSync(file, '\n');
    source.refresh(true);
    expect(source.current.users.size).toBe(2);
    const errors = lines.filter((l) => l.msg === 'web config not reloaded; keeping the last good one');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.err).toContain('basic_auth_users.prometheus: is not a bcrypt hash');
    // Warn: the exporter goes on serving as before.
    expect(errors[0]!.level).toBe(40);

    fs.writeFileSync(file, '');
    source.refresh();
    expect(changes).toHaveLength(1);
    expect(source.basicAuth.enabled).toBe(true);
  });

  it('ignores a touch that changes nothing, and reloads when a named file changes', () => {
    const { dir, file, logger } = workspace();
    fs.writeFileSync(file, 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n');
    const source = new WebConfigSource(file, logger);
    const changes: WebConfig[] = [];
    source.on('change', (next) => changes.push(next));
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(file, later, later);
    source.refresh();
    source.refresh(true);
    expect(changes).toHaveLength(0);

    // Certificate rotation: the config file stays, the files it names change.
    fs.copyFileSync(path.join(DIR, 'client-ca.crt'), path.join(dir, 'server.crt'));
    source.refresh();
    expect(changes).toHaveLength(0); // that certificate does not match the key: kept the last good one
    fs.copyFileSync(path.join(DIR, 'server.crt'), path.join(dir, 'server.crt'));
    fs.writeFileSync(file, 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n');
    source.refresh();
    expect(changes).toHaveLength(1);
    expect(source.current.tls!.minVersion).toBe('TLSv1.3');
  });

  it('refuses to switch between HTTP and HTTPS without a restart', () => {
    const { file, lines, logger } = workspace();
    fs.writeFileSync(file, users);
    const source = new WebConfigSource(file, logger);
    fs.writeFileSync(file, 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n');
    source.refresh();
    expect(source.current.tls).toBeUndefined();
    expect(source.current.users.size).toBe(2);
    expect(lines.some((l) => String(l.err).includes('switching from HTTP to HTTPS needs a restart'))).toBe(true);
  });

  it('fails at start on a bad file', () => {
    const { file, logger } = workspace();
    fs.writeFileSync(file, 'basic_auth_users: 1\n');
    expect(() => new WebConfigSource(file, logger)).toThrow(WebConfigError);
  });
});

describe('a reload never fails open: turning basic auth, TLS or client-certificate checks off takes a restart', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  const PROMETHEUS = '$2y$10$Q43SDniE4IPLtNfOqduZvesmit/7NMShRLYmEszWk3N8wN87iKTyS';
  const ALICE = '$2b$04$Z.ykboP0R8OaZYM0cJj5HeAITQbnc2PWpcXOiDsLrpz81OzQEx1lK';
  const USERS = `basic_auth_users:\n  prometheus: ${PROMETHEUS}\n  alice: ${ALICE}\n`;
  const tls = (extra = '', cert = 'server.crt'): string => `tls_server_config:\n  cert_file: ${cert}\n  key_file: server.key\n${extra}`;
  const mtls = (auth: string, extra = '', ca = 'client-ca.crt'): string => tls(`  client_auth_type: ${auth}\n  client_ca_file: ${ca}\n${extra}`);

  /** Starts a source on `running`, writes `next` and re-reads it, as the next request would. */
  async function reload(running: string, next: string) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'web-config-'));
    dirs.push(dir);
    for (const f of ['server.crt', 'server.key', 'client-ca.crt']) fs.copyFileSync(path.join(DIR, f), path.join(dir, f));
    // A new certificate and a new CA, as rotation brings them.
    fs.copyFileSync(path.join(DIR, 'server.crt'), path.join(dir, 'server-renewed.crt'));
    fs.copyFileSync(path.join(DIR, 'server.crt'), path.join(dir, 'other-ca.crt'));
    const file = path.join(dir, 'web.yml');
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    fs.writeFileSync(file, running);
    const source = new WebConfigSource(file, logger, { metrics: createWebMetrics(new Registry()) });
    const before = source.current;
    let changed = 0;
    source.on('change', () => changed++);
    fs.writeFileSync(file, next);
    source.refresh();
    const { values } = await source.metrics.configReloads.get();
    const counted = Object.fromEntries(values.map((v) => [String(v.labels.result), v.value]));
    const refusals = lines.filter((l) => l.msg === 'web config not reloaded; keeping the last good one');
    return { source, before, changed, counted, refusals, file };
  }

  async function expectRefused(running: string, next: string, reason: string): Promise<void> {
    const { source, before, changed, counted, refusals } = await reload(running, next);
    expect(source.current).toBe(before);
    expect(changed).toBe(0);
    expect(counted).toEqual({ success: 0, failure: 1 });
    expect(refusals).toHaveLength(1);
    expect(refusals[0]!.level).toBe(40);
    expect(refusals[0]!.err).toContain(reason);
  }

  async function expectApplied(running: string, next: string): Promise<WebConfig> {
    const { source, before, changed, counted, refusals } = await reload(running, next);
    expect(refusals).toEqual([]);
    expect(source.current).not.toBe(before);
    expect(changed).toBe(1);
    expect(counted).toEqual({ success: 1, failure: 0 });
    return source.current;
  }

  const RESTART = 'turning that off takes a restart';
  const NO_USERS = 'refused while running: it has no basic_auth_users, which would turn basic auth off; ' + RESTART;

  it('refuses a file that would remove basic auth, whatever the reason', async () => {
    await expectRefused(USERS, 'http_server_config:\n  headers:\n    X-Frame-Options: deny\n', NO_USERS);
    await expectRefused(USERS, 'basic_auth_users: {}\n', NO_USERS);
  });

  it('refuses an empty file, a comment-only file and truncated files', async () => {
    await expectRefused(USERS, '', NO_USERS);
    await expectRefused(USERS, '# managed by config management: do not edit\n', NO_USERS);
    await expectRefused(USERS, 'basic_auth_users:\n', NO_USERS);
    await expectRefused(USERS, USERS.slice(0, USERS.indexOf(PROMETHEUS) + 20), 'basic_auth_users.prometheus: is not a bcrypt hash');
    await expectRefused(tls() + USERS, 'tls_server_config:\n  cert_file: server.crt\n', 'key_file (or key) is required');
    await expectRefused(tls() + USERS, '', 'it has no tls_server_config, which would turn TLS off');
  });

  it('refuses a file that would remove TLS', async () => {
    const { refusals } = await reload(tls() + USERS, USERS);
    expect(refusals[0]!.err).toContain(`refused while running: it has no tls_server_config, which would turn TLS off; ${RESTART}`);
    await expectRefused(mtls('RequireAndVerifyClientCert'), 'tls_server_config: {}\n', 'which would turn TLS off');
  });

  it('refuses a file that would remove or loosen client-certificate checks', async () => {
    const strict = mtls('RequireAndVerifyClientCert');
    await expectRefused(strict, tls(), 'client_auth_type NoClientCert would let in clients without a certificate, which RequireAndVerifyClientCert turns away; client_auth_type NoClientCert would stop verifying client certificates against client_ca_file, which RequireAndVerifyClientCert does');
    await expectRefused(strict, tls('  client_auth_type: RequestClientCert\n'), 'client_auth_type RequestClientCert would let in clients without a certificate');
    await expectRefused(strict, tls('  client_auth_type: RequireAnyClientCert\n'), 'client_auth_type RequireAnyClientCert would stop verifying client certificates');
    await expectRefused(strict, mtls('VerifyClientCertIfGiven'), 'client_auth_type VerifyClientCertIfGiven would let in clients without a certificate');
    await expectRefused(mtls('VerifyClientCertIfGiven'), tls('  client_auth_type: RequireAnyClientCert\n'), 'would stop verifying client certificates');
    await expectRefused(tls('  client_auth_type: RequireAnyClientCert\n'), tls(), 'client_auth_type NoClientCert would let in clients without a certificate');
    // client_ca_file dropped while the type still verifies: a bad file, refused all the same.
    await expectRefused(strict, tls('  client_auth_type: RequireAndVerifyClientCert\n'), 'client_auth_type RequireAndVerifyClientCert needs client_ca_file');
    await expectRefused(mtls('RequireAndVerifyClientCert', '  client_allowed_sans: [prometheus.example.com]\n'), strict, 'it has no client_allowed_sans, which would let in any certificate the CA signed');
  });

  it('applies what changes who gets in without turning a check off', async () => {
    // One of several users removed, a new password, a new user.
    expect([...(await expectApplied(USERS, `basic_auth_users:\n  prometheus: ${PROMETHEUS}\n`)).users.keys()]).toEqual(['prometheus']);
    expect((await expectApplied(USERS, `basic_auth_users:\n  prometheus: ${ALICE}\n  alice: ${ALICE}\n`)).users.get('prometheus')).toBe(ALICE);
    expect((await expectApplied(USERS, `${USERS}  bob: ${ALICE}\n`)).users.size).toBe(3);
    expect((await expectApplied(USERS, `${USERS}http_server_config:\n  headers:\n    X-Frame-Options: deny\n`)).headers).toEqual({ 'X-Frame-Options': 'deny' });
    // Auth turned on while running is stricter, and fine.
    expect((await expectApplied('', USERS)).users.size).toBe(2);
    // A new certificate, a new CA, stricter or other client-certificate settings.
    expect((await expectApplied(tls(), tls('', 'server-renewed.crt'))).files.some((f) => f.endsWith('server-renewed.crt'))).toBe(true);
    expect((await expectApplied(mtls('RequireAndVerifyClientCert'), mtls('RequireAndVerifyClientCert', '', 'other-ca.crt'))).files.some((f) => f.endsWith('other-ca.crt'))).toBe(true);
    expect((await expectApplied(tls(), mtls('VerifyClientCertIfGiven'))).tls!.clientAuth).toBe('VerifyClientCertIfGiven');
    expect((await expectApplied(mtls('VerifyClientCertIfGiven'), mtls('RequireAndVerifyClientCert'))).tls!.clientAuth).toBe('RequireAndVerifyClientCert');
    expect((await expectApplied(tls('  client_auth_type: RequestClientCert\n'), tls())).tls!.clientAuth).toBe('NoClientCert');
    const sans = mtls('RequireAndVerifyClientCert', '  client_allowed_sans: [a.example]\n');
    expect((await expectApplied(sans, mtls('RequireAndVerifyClientCert', '  client_allowed_sans: [b.example, c.example]\n'))).tls!.clientAllowedSans).toEqual(['b.example', 'c.example']);
    expect((await expectApplied(tls(), tls('  min_version: TLS13\n'))).tls!.minVersion).toBe('TLSv1.3');
  });

  it('keeps the last good config through what an editor writes for an instant, and takes the finished file', async () => {
    const { source, file, refusals } = await reload(USERS, '');
    // The same refusal again (SIGHUP, a touch): counted each time, logged once.
    fs.writeFileSync(file, '# half-written\n');
    source.refresh();
    fs.writeFileSync(file, '');
    source.refresh(true);
    source.refresh(true);
    expect(refusals).toHaveLength(1);
    expect(source.current.users.size).toBe(2);
    fs.writeFileSync(file, `${USERS}  bob: ${ALICE}\n`);
    source.refresh();
    expect(source.current.users.size).toBe(3);
    const { values } = await source.metrics.configReloads.get();
    expect(Object.fromEntries(values.map((v) => [String(v.labels.result), v.value]))).toEqual({ success: 1, failure: 4 });
  });

  it('weakenings() finds nothing between a config and itself', () => {
    for (const f of ['full.good.yml', 'tls-client-auth.good.yml', 'users.good.yml', 'empty.good.yml']) {
      const config = loadWebConfig(path.join(DIR, f));
      expect(weakenings(config, config)).toEqual([]);
    }
  });
});
