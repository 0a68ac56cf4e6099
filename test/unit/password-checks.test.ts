import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BasicAuth } from '../../src/web/basic-auth.js';
import { PasswordVerifier } from '../../src/web/password-verifier.js';
import { createWebApp } from '../../src/web/server.js';
import { WebConfigSource } from '../../src/web/web-config-source.js';
import { createWebMetrics } from '../../src/web/web-metrics.js';

// users.good.yml: prometheus / s3cret (cost 10), alice / hunter2 (cost 4).
const PROMETHEUS = '$2y$10$Q43SDniE4IPLtNfOqduZvesmit/7NMShRLYmEszWk3N8wN87iKTyS';
const ALICE = '$2b$04$Z.ykboP0R8OaZYM0cJj5HeAITQbnc2PWpcXOiDsLrpz81OzQEx1lK';
const users = new Map([['prometheus', PROMETHEUS], ['alice', ALICE]]);
const header = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** A stand-in worker: "right" matches, "hang" never answers, "crash" kills the worker; anything else is wrong. */
const FAKE_WORKER = `'use strict';
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => {
  if (m.password === 'crash') throw new Error('boom');
  if (m.password === 'hang') return;
  parentPort.postMessage({ id: m.id, match: m.password === 'right' });
});
`;

const verifiers: PasswordVerifier[] = [];
afterEach(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
});

function logged(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, logger: pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }) };
}

function verifier(opts: ConstructorParameters<typeof PasswordVerifier>[1] = {}, logger = pino({ level: 'silent' })): PasswordVerifier {
  const v = new PasswordVerifier(logger, opts);
  verifiers.push(v);
  return v;
}

describe('PasswordVerifier (bcrypt in a worker thread)', () => {
  it('starts its worker on the first check only, and compares there', async () => {
    const v = verifier();
    expect(v.running).toBe(false);
    expect(await v.verify('s3cret', PROMETHEUS)).toBe(true);
    expect(v.running).toBe(true);
    expect(await v.verify('hunter2', PROMETHEUS)).toBe(false);
    expect(await Promise.all([v.verify('hunter2', ALICE), v.verify('s3cret', ALICE)])).toEqual([true, false]);
    expect(v.queued).toBe(0);
  });

  it('keeps the main thread free while it compares', async () => {
    const v = verifier();
    // Ten cost-10 compares: hundreds of milliseconds of bcrypt, none of it on this thread.
    const checks = Array.from({ length: 10 }, (_, i) => v.verify(`wrong-${i}`, PROMETHEUS));
    const before = performance.eventLoopUtilization();
    expect(await Promise.all(checks)).toEqual(Array(10).fill(false));
    const { utilization, active } = performance.eventLoopUtilization(before);
    // On this thread the loop would be busy nearly all along (bcrypt is pure JavaScript).
    expect(utilization).toBeLessThan(0.3);
    expect(active).toBeLessThan(100);
  });

  it('answers "busy" at once beyond its queue, and takes checks again as the queue drains', async () => {
    const v = verifier({ maxPending: 2, program: FAKE_WORKER });
    const held = [v.verify('hang', 'h'), v.verify('hang', 'h')];
    expect(v.queued).toBe(2);
    expect(await v.verify('right', 'h')).toBe('busy');
    expect(v.queued).toBe(2);
    const failed = Promise.all(held.map((h) => expect(h).rejects.toThrow('password verifier closed')));
    await v.close();
    await failed;
    const w = verifier({ maxPending: 1, program: FAKE_WORKER });
    expect(await w.verify('right', 'h')).toBe(true);
    expect(await w.verify('wrong', 'h')).toBe(false);
  });

  it('fails the checks of a worker that died, never lets them pass, and starts a new worker after a pause', async () => {
    const { logger, lines } = logged();
    const v = verifier({ program: FAKE_WORKER, restartDelayMs: 200 }, logger);
    const waiting = v.verify('hang', 'h');
    await expect(v.verify('crash', 'h')).rejects.toThrow('bcrypt worker died: boom');
    await expect(waiting).rejects.toThrow('bcrypt worker died');
    expect(v.running).toBe(false);
    // Within the pause: failed at once, no worker started (a crashing worker does not loop).
    await expect(v.verify('right', 'h')).rejects.toThrow(/bcrypt worker died \d+ ms ago/);
    expect(v.running).toBe(false);
    await new Promise((r) => setTimeout(r, 250));
    expect(await v.verify('right', 'h')).toBe(true);
    const deaths = lines.filter((l) => l.msg === 'bcrypt worker died; its checks fail closed and a new worker starts on a later check');
    expect(deaths).toHaveLength(1);
    expect(deaths[0]).toMatchObject({ level: 50, err: 'boom', failedChecks: 2 });
  });

  it('takes a worker that answers nothing past its stall bound as dead: its checks fail closed, the next worker answers', async () => {
    const { logger, lines } = logged();
    const v = verifier({ program: FAKE_WORKER, restartDelayMs: 0, stallMs: 200, maxPending: 2 }, logger);
    const stuck = [v.verify('hang', 'h'), v.verify('hang', 'h')];
    // A hung worker would hold the queue full for good: every new password refused.
    expect(await v.verify('right', 'h')).toBe('busy');
    for (const p of stuck) await expect(p).rejects.toThrow('bcrypt worker died: no answer for 200 ms with 2 checks waiting');
    expect(await v.verify('right', 'h')).toBe(true);
    expect(lines.filter((l) => l.msg === 'bcrypt worker died; its checks fail closed and a new worker starts on a later check')).toHaveLength(1);
  });

  it('stops an idle worker and starts another on the next check', async () => {
    const v = verifier({ idleMs: 50 });
    expect(await v.verify('hunter2', ALICE)).toBe(true);
    expect(v.running).toBe(true);
    await new Promise((r) => setTimeout(r, 150));
    expect(v.running).toBe(false);
    expect(await v.verify('hunter2', ALICE)).toBe(true);
  });
});

describe('BasicAuth: checks already known right never wait', () => {
  it('answers a remembered right password without the queue while the queue is full', async () => {
    const v = verifier({ maxPending: 1, program: FAKE_WORKER });
    const auth = new BasicAuth(users, v);
    expect(await auth.check(header('prometheus', 'right'))).toBe('ok');
    const verify = vi.spyOn(v, 'verify');
    const held = auth.check(header('prometheus', 'hang'));
    expect(v.queued).toBe(1);
    expect(await auth.check(header('prometheus', 'other'))).toBe('busy');
    // Unknown users are refused the same way, before any compare: 429 tells nothing about who exists.
    expect(await auth.check(header('nobody', 'other'))).toBe('busy');
    const started = performance.now();
    expect(await auth.check(header('prometheus', 'right'))).toBe('ok');
    expect(performance.now() - started).toBeLessThan(20);
    expect(verify).toHaveBeenCalledTimes(3);
    const failed = expect(held).rejects.toThrow('password verifier closed');
    await v.close();
    await failed;
  });

  it('keeps right pairs apart from wrong ones: a flood of wrong passwords evicts none', async () => {
    const v = verifier();
    const auth = new BasicAuth(users, v);
    expect(await auth.check(header('alice', 'hunter2'))).toBe('ok');
    for (let batch = 0; batch < 20; batch++) {
      const answers = await Promise.all(Array.from({ length: 15 }, (_, i) => auth.check(header('alice', `wrong-${batch}-${i}`))));
      expect(answers.every((a) => a === 'denied')).toBe(true);
    }
    const verify = vi.spyOn(v, 'verify');
    expect(await auth.check(header('alice', 'hunter2'))).toBe('ok');
    expect(verify).not.toHaveBeenCalled();
  });

  it('makes one compare for one pair sent by many requests at once, and remembers wrong pairs too', async () => {
    const v = verifier();
    const auth = new BasicAuth(users, v);
    const verify = vi.spyOn(v, 'verify');
    expect(await Promise.all(Array.from({ length: 20 }, () => auth.check(header('alice', 'stale password'))))).toEqual(Array(20).fill('denied'));
    expect(await auth.check(header('alice', 'stale password'))).toBe('denied');
    expect(verify).toHaveBeenCalledTimes(1);
  });

  it('a reload keeps the right pairs of users whose hash did not change, and only those', async () => {
    const v = verifier();
    const first = new BasicAuth(users, v);
    expect(await first.check(header('alice', 'hunter2'))).toBe('ok');
    expect(await first.check(header('prometheus', 's3cret'))).toBe('ok');
    const verify = vi.spyOn(v, 'verify');
    const second = new BasicAuth(new Map([['alice', ALICE], ['prometheus', ALICE]]), v, first);
    expect(await second.check(header('alice', 'hunter2'))).toBe('ok');
    expect(verify).not.toHaveBeenCalled();
    // prometheus has a new hash: the old password is checked again, and is wrong now.
    expect(await second.check(header('prometheus', 's3cret'))).toBe('denied');
    expect(verify).toHaveBeenCalledTimes(1);
  });
});

describe('the HTTP answers of password checks', () => {
  const dirs: string[] = [];
  const servers: http.Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  async function serve(v: PasswordVerifier): Promise<{ get: (auth: string) => Promise<Response>; registry: Registry }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'password-checks-'));
    dirs.push(dir);
    const file = path.join(dir, 'web.yml');
    fs.writeFileSync(file, `basic_auth_users:\n  prometheus: ${PROMETHEUS}\n`);
    const logger = pino({ level: 'silent' });
    const registry = new Registry();
    const source = new WebConfigSource(file, logger, { metrics: createWebMetrics(registry), verifier: v });
    const app = createWebApp(
      { listenHost: '127.0.0.1', listenPort: 0, telemetryPath: '/metrics', version: 'test', logger },
      { metrics: async () => ({ contentType: 'text/plain', body: Buffer.from('up 1\n') }), ready: async () => ({ ready: true, detail: 'ok' }), live: () => ({ live: true, detail: 'ok' }) },
      source,
    );
    const server = http.createServer(app);
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    return { registry, get: (auth) => fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: auth } }) };
  }

  it('429 with Retry-After when the queue is full; 200 for a remembered right password meanwhile', async () => {
    const v = verifier({ maxPending: 1, program: FAKE_WORKER });
    const { get, registry } = await serve(v);
    expect((await get(header('prometheus', 'right'))).status).toBe(200);
    const held = get(header('prometheus', 'hang'));
    await vi.waitFor(() => expect(v.queued).toBe(1));
    const busy = await get(header('prometheus', 'wrong'));
    expect(busy.status).toBe(429);
    expect(busy.headers.get('retry-after')).toBe('1');
    expect(await busy.text()).toBe('Too Many Requests\n');
    expect((await get(header('prometheus', 'right'))).status).toBe(200);
    expect(await registry.getSingleMetricAsString('docker_exporter_web_password_checks_refused_total')).toContain('docker_exporter_web_password_checks_refused_total{reason="queue_full"} 1');
    await v.close();
    expect((await held).status).toBe(503);
  });

  it('503, never 200, when the worker fails', async () => {
    const v = verifier({ program: FAKE_WORKER, restartDelayMs: 60_000 });
    const { get, registry } = await serve(v);
    expect((await get(header('prometheus', 'crash'))).status).toBe(503);
    // The worker is not back yet: a right password is not let in unchecked.
    const res = await get(header('prometheus', 'right'));
    expect(res.status).toBe(503);
    expect(await res.text()).toBe('Service Unavailable: the password check failed\n');
    expect(await registry.getSingleMetricAsString('docker_exporter_web_password_checks_refused_total')).toContain('{reason="worker_failed"} 2');
  });
});
