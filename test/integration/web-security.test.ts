import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { REPO_ROOT, requireTool } from '../helpers/tools.js';

/** Only the engine collector: these tests are about the web layer, and fast. */
const ENGINE_ONLY = ['--no-collector.containers', '--no-collector.stats', '--no-collector.events', '--no-collector.df'];

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  peer?: PeerCertificate;
}

interface RequestOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  auth?: string;
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  timeoutMs?: number;
}

/** One request on a fresh connection (no agent, no TLS session reuse), so each sees the server's current TLS setup. */
function request(url: string, opts: RequestOptions = {}): Promise<Answer> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        agent: false,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        maxVersion: opts.maxVersion,
        headers: opts.auth ? { authorization: `Basic ${Buffer.from(opts.auth).toString('base64')}` } : {},
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          const peer = u.protocol === 'https:' ? (res.socket as TLSSocket).getPeerCertificate?.() : undefined;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, peer });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** Whether the request fails below HTTP (handshake refused, connection reset). */
async function refused(url: string, opts: RequestOptions): Promise<string | false> {
  try {
    const res = await request(url, opts);
    return res.status === 200 ? false : `HTTP ${res.status}`;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

/** Certificates made for this file: a CA, two server certificates, a client it signed and a rogue client. */
function makeCerts(dir: string): void {
  const openssl = requireTool('openssl', 'openssl');
  const run = (args: string[]): void => void execFileSync(openssl, args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=web test CA', '-keyout', 'ca-key.pem', '-out', 'ca.pem']);
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  fs.writeFileSync(path.join(dir, 'client.ext'), 'subjectAltName=DNS:prometheus.example\nextendedKeyUsage=clientAuth\n');
  for (const [name, cn, ext] of [['server', 'exporter one', 'server.ext'], ['server2', 'exporter two', 'server.ext'], ['client', 'prometheus', 'client.ext']] as const) {
    run(['req', ...ec, '-subj', `/CN=${cn}`, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`]);
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', `${name}.pem`]);
  }
  run(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=rogue', '-keyout', 'rogue-key.pem', '-out', 'rogue.pem']);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'web-security-'));
const read = (f: string): Buffer => fs.readFileSync(path.join(dir, f));
/** Low cost keeps the test fast; the server treats any cost alike. */
const hash = (password: string): string => bcrypt.hashSync(password, 6);

function writeConfig(name: string, text: string): string {
  const file = path.join(dir, name);
  // Write then rename, as editors and config management do: a reader never sees half a file.
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
  return file;
}

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('TLS with client certificates (RequireAndVerifyClientCert)', () => {
  let exporter: RunningExporter;
  let url: string;
  let configFile: string;
  const mtlsConfig = (cert: string, extra = ''): string => `tls_server_config:
  cert_file: ${cert}.pem
  key_file: ${cert}-key.pem
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
${extra}http_server_config:
  headers:
    Strict-Transport-Security: max-age=63072000
    X-Content-Type-Options: nosniff
    X-Frame-Options: deny
`;

  beforeAll(async () => {
    makeCerts(dir);
    configFile = writeConfig('mtls.yml', mtlsConfig('server'));
    exporter = await startExporter([...ENGINE_ONLY, '--web.config.file', configFile]);
    url = `https://127.0.0.1:${exporter.port}`;
  });
  afterAll(async () => {
    expect(await exporter.stop()).toBe(0);
  });

  it('serves a client whose certificate the CA signed, with the configured headers', async () => {
    const res = await request(`${url}/metrics`, { ca: read('ca.pem'), cert: read('client.pem'), key: read('client-key.pem') });
    expect(res.status).toBe(200);
    expect(res.body).toMatch(/^docker_up 1$/m);
    expect(res.peer?.subject.CN).toBe('exporter one');
    expect(res.headers['strict-transport-security']).toBe('max-age=63072000');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('deny');
    const landing = await request(`${url}/`, { ca: read('ca.pem'), cert: read('client.pem'), key: read('client-key.pem') });
    expect(landing.status).toBe(200);
    expect(landing.headers['x-frame-options']).toBe('deny');
    expect(exporter.logs.some((l) => /"msg":"listening"/.test(l) && /"tls":true/.test(l) && /"clientAuth":"RequireAndVerifyClientCert"/.test(l))).toBe(true);
  });

  it('turns away a client without a certificate, one the CA did not sign, and plain HTTP', async () => {
    expect(await refused(`${url}/metrics`, { ca: read('ca.pem') })).toBeTruthy();
    expect(await refused(`${url}/metrics`, { ca: read('ca.pem'), cert: read('rogue.pem'), key: read('rogue-key.pem') })).toBeTruthy();
    expect(await refused(`http://127.0.0.1:${exporter.port}/metrics`, {})).toBeTruthy();
    // And the client's own check: the server's certificate is not trusted without our CA.
    expect(await refused(`${url}/metrics`, { cert: read('client.pem'), key: read('client-key.pem') })).toBe('SELF_SIGNED_CERT_IN_CHAIN');
  });

  it('applies a changed file on the next connection: new certificate, TLS version and client policy, without a restart', async () => {
    const client = { ca: read('ca.pem'), cert: read('client.pem'), key: read('client-key.pem') };
    writeConfig('mtls.yml', mtlsConfig('server2', '  min_version: TLS13\n'));
    const res = await request(`${url}/metrics`, client);
    expect(res.status).toBe(200);
    expect(res.peer?.subject.CN).toBe('exporter two');
    expect(await refused(`${url}/metrics`, { ...client, maxVersion: 'TLSv1.2' })).toBeTruthy();

    // Back to the first certificate, with other headers: applied.
    writeConfig('mtls.yml', mtlsConfig('server').replace('X-Frame-Options: deny', 'X-Frame-Options: sameorigin'));
    const back = await request(`${url}/metrics`, client);
    expect(back.status).toBe(200);
    expect(back.peer?.subject.CN).toBe('exporter one');
    expect(back.headers['x-frame-options']).toBe('sameorigin');
    expect(exporter.proc.exitCode).toBeNull();
  });

  it('refuses a file that would stop asking for client certificates, or turn TLS off: that takes a restart', async () => {
    const client = { ca: read('ca.pem'), cert: read('client.pem'), key: read('client-key.pem') };
    const before = exporter.logs.length;
    for (const weaker of [
      'tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n',
      'tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth_type: RequireAnyClientCert\n',
      '',
      '# being rewritten\n',
    ]) {
      writeConfig('mtls.yml', weaker);
      expect(await refused(`${url}/metrics`, { ca: read('ca.pem') })).toBeTruthy();
      expect(await refused(`${url}/metrics`, { ca: read('ca.pem'), cert: read('rogue.pem'), key: read('rogue-key.pem') })).toBeTruthy();
      const ok = await request(`${url}/metrics`, client);
      expect(ok.status).toBe(200);
      expect(ok.headers['x-frame-options']).toBe('sameorigin');
    }
    const refusals = exporter.logs.slice(before).filter((l) => l.includes('web config not reloaded; keeping the last good one'));
    for (const line of refusals) {
      expect(line).toContain('"level":40');
      expect(line).toContain('takes a restart');
    }
    expect(refusals).toHaveLength(3);
    // The finished file applies as usual.
    writeConfig('mtls.yml', mtlsConfig('server'));
    expect((await request(`${url}/metrics`, client)).headers['x-frame-options']).toBe('deny');
    expect(exporter.proc.exitCode).toBeNull();
  });
});

describe('basic auth', () => {
  let exporter: RunningExporter;
  let configFile: string;
  const users = (entries: Record<string, string>): string =>
    `basic_auth_users:\n${Object.entries(entries).map(([u, p]) => `  ${u}: ${hash(p)}\n`).join('')}http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n`;

  beforeAll(async () => {
    configFile = writeConfig('auth.yml', users({ prometheus: 'right horse battery', grafana: 'staple' }));
    exporter = await startExporter([...ENGINE_ONLY, '--web.config.file', configFile]);
  });
  afterAll(async () => {
    expect(await exporter.stop()).toBe(0);
  });

  it('lets in the right password only; wrong password, unknown user and no credentials get 401 on every path', async () => {
    const ok = await request(`${exporter.url}/metrics`, { auth: 'prometheus:right horse battery' });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatch(/^docker_up 1$/m);
    expect((await request(`${exporter.url}/metrics`, { auth: 'grafana:staple' })).status).toBe(200);
    for (const auth of ['prometheus:wrong', 'prometheus:', 'nobody:right horse battery', 'grafana:right horse battery', undefined]) {
      for (const p of ['/metrics', '/', '/healthz', '/readyz', '/nothing']) {
        const res = await request(`${exporter.url}${p}`, { auth });
        expect(res.status, `${auth} ${p}`).toBe(401);
        expect(res.headers['www-authenticate']).toBe('Basic');
        expect(res.headers['x-content-type-options']).toBe('nosniff');
        expect(res.body).not.toContain('docker_up');
      }
    }
  });

  it('picks up a changed file on the next request, and keeps the last good one when the file turns bad', async () => {
    writeConfig('auth.yml', users({ prometheus: 'new password' }));
    expect((await request(`${exporter.url}/metrics`, { auth: 'prometheus:right horse battery' })).status).toBe(401);
    expect((await request(`${exporter.url}/metrics`, { auth: 'grafana:staple' })).status).toBe(401);
    expect((await request(`${exporter.url}/metrics`, { auth: 'prometheus:new password' })).status).toBe(200);

    writeConfig('auth.yml', 'basic_auth_users:\n  prometheus: plaintext-is-not-a-hash\n');
    for (let i = 0; i < 3; i++) {
      expect((await request(`${exporter.url}/metrics`, { auth: 'prometheus:new password' })).status).toBe(200);
      expect((await request(`${exporter.url}/metrics`, { auth: 'prometheus:plaintext-is-not-a-hash' })).status).toBe(401);
    }
    const errors = exporter.logs.filter((l) => l.includes('web config not reloaded; keeping the last good one'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('"level":40');
    expect(errors[0]).toContain('basic_auth_users.prometheus: is not a bcrypt hash');
  });

  it('refuses a file that would turn basic auth off (empty, comment-only, users removed): that takes a restart', async () => {
    const before = exporter.logs.length;
    for (const weaker of ['', '# rewritten by config management\n', 'http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n']) {
      writeConfig('auth.yml', weaker);
      expect((await request(`${exporter.url}/metrics`)).status).toBe(401);
      expect((await request(`${exporter.url}/metrics`, { auth: 'prometheus:new password' })).status).toBe(200);
    }
    const refusals = exporter.logs.slice(before).filter((l) => l.includes('web config not reloaded; keeping the last good one'));
    // One line per distinct reason: all three files remove basic auth.
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toContain('"level":40');
    expect(refusals[0]).toContain('refused while running: it has no basic_auth_users, which would turn basic auth off; turning that off takes a restart');
  });

  it('re-reads the file on SIGHUP, with no request to notice the change', async () => {
    writeConfig('auth.yml', users({ sighup: 'hup' }));
    const before = exporter.logs.length;
    exporter.proc.kill('SIGHUP');
    await waitFor('the reload after SIGHUP', () => exporter.logs.slice(before).some((l) => l.includes('"msg":"web config reloaded"')), 5000, 50);
    expect(exporter.logs.slice(before).some((l) => l.includes('"msg":"reloading web config"'))).toBe(true);
    expect((await request(`${exporter.url}/metrics`, { auth: 'sighup:hup' })).status).toBe(200);
    expect((await request(`${exporter.url}/metrics`, { auth: 'prometheus:new password' })).status).toBe(401);
    expect(exporter.proc.exitCode).toBeNull();
  });
});

describe('basic auth under a flood of wrong passwords', () => {
  let exporter: RunningExporter;

  beforeAll(async () => {
    // Cost 10, as htpasswd -nBC 10 makes: the cost at which the flood stalled the process before.
    const file = writeConfig('flood.yml', `basic_auth_users:\n  prometheus: ${bcrypt.hashSync('right', 10)}\n`);
    exporter = await startExporter([...ENGINE_ONLY, '--web.config.file', file]);
  });
  afterAll(async () => {
    expect(await exporter.stop()).toBe(0);
  });

  it('answers a scraper whose password it already checked at once while 300 wrong passwords arrive together', async () => {
    const good = { auth: 'prometheus:right', timeoutMs: 120_000 };
    // The first check of the right password pays for bcrypt; from then on it is remembered.
    expect((await request(`${exporter.url}/metrics`, good)).status).toBe(200);
    expect((await request(`${exporter.url}/metrics`, good)).status).toBe(200);

    const started = performance.now();
    const flood = Promise.all(Array.from({ length: 300 }, (_, i) => request(`${exporter.url}/metrics`, { auth: `prometheus:wrong-${i}`, timeoutMs: 120_000 })));
    let floodMs: number | undefined;
    void flood.then(() => (floodMs = performance.now() - started), () => (floodMs = performance.now() - started));
    // Scrape as a scraper would, again and again until the flood is answered: a remembered password
    // must not wait at the start of the flood, nor later, once wrong passwords have filled the cache.
    const latencies: number[] = [];
    await new Promise((r) => setTimeout(r, 100));
    do {
      const t = performance.now();
      const scrape = await request(`${exporter.url}/metrics`, good);
      latencies.push(performance.now() - t);
      expect(scrape.status).toBe(200);
      expect(scrape.body).toMatch(/^docker_up 1$/m);
      await new Promise((r) => setTimeout(r, 100));
    } while (floodMs === undefined);
    const answers = await flood;
    const statuses: Record<number, number> = {};
    for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
    const sorted = [...latencies].sort((x, y) => x - y);
    console.log(
      `cached good scrape during 300 concurrent wrong passwords: slowest ${sorted.at(-1)!.toFixed(0)} ms, median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ms ` +
        `over ${latencies.length} scrapes; the flood was answered in ${(floodMs! / 1000).toFixed(1)} s: ${JSON.stringify(statuses)}`,
    );

    expect(Math.max(...latencies)).toBeLessThan(1000);
    // Never let in, whichever way turned away.
    expect(answers.every((a) => a.status === 401 || a.status === 429)).toBe(true);
  });
});

describe('a bad web config file at startup', () => {
  const run = (args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const child = execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', '--web.listen-address', '127.0.0.1:0', ...ENGINE_ONLY, ...args], { cwd: REPO_ROOT, timeout: 30_000 }, (_err, stdout, stderr) =>
        resolve({ status: child.exitCode, stdout, stderr }),
      );
    });

  it('exits with status 2 and one line naming the file and the key', async () => {
    const bad = writeConfig('bad.yml', 'tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth_type: RequireAndVerify\n');
    const missing = path.join(dir, 'missing.yml');
    const [res, res2] = await Promise.all([run(['--web.config.file', bad]), run(['--web.config.file', missing])]);
    expect(res.status).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe(`docker-exporter: --web.config.file ${bad}: tls_server_config.client_auth_type: "RequireAndVerify" is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert\n`);
    expect(res2.status).toBe(2);
    expect(res2.stdout).toBe('');
    expect(res2.stderr).toBe(`docker-exporter: --web.config.file ${missing}: cannot read it: ENOENT\n`);
  });

  it('and without a web config, SIGHUP neither stops the exporter nor changes what it serves', async () => {
    const exporter = await startExporter(ENGINE_ONLY);
    exporter.proc.kill('SIGHUP');
    await waitFor('the SIGHUP log line', () => exporter.logs.some((l) => l.includes('no --web.config.file to reload')), 5000, 50);
    expect(await exporter.scrape()).toMatch(/^docker_up 1$/m);
    expect(await exporter.stop()).toBe(0);
  });
});
