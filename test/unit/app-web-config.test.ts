import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { ConfigError } from '../../src/errors.js';
import { buildConfig } from '../helpers/config.js';
import { REPO_ROOT } from '../helpers/tools.js';

const FIXTURES = path.join(REPO_ROOT, 'test/fixtures/web-config');
// Nothing that would reach for an engine: only the web server runs.
const NO_COLLECTORS = ['--no-collector.engine', '--no-collector.containers', '--no-collector.stats', '--no-collector.events', '--no-collector.df'];
const silent = pino({ level: 'silent' });

let app: App | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await app?.stop();
  app = undefined;
});

describe('--web.config.file at start', () => {
  it('is read once, when the app is made, and served from what was read', async () => {
    const file = path.join(FIXTURES, 'headers.good.yml');
    const reads = vi.spyOn(fs, 'readFileSync');
    const readsOfFile = (): number => reads.mock.calls.filter(([p]) => p === file).length;
    app = createApp(buildConfig([...NO_COLLECTORS, '--web.listen-address', '127.0.0.1:0', '--web.config.file', file]), silent);
    expect(readsOfFile()).toBe(1);
    const { port } = await app.start();
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-frame-options')).toBe('deny');
    expect(readsOfFile()).toBe(1);
  });

  it('is a ConfigError from createApp when it cannot be used, before anything starts', () => {
    const file = path.join(FIXTURES, 'header-value.bad.yml');
    const make = (): App => createApp(buildConfig([...NO_COLLECTORS, '--web.config.file', file]), silent);
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(`--web.config.file ${file}: http_server_config.headers.X-Frame-Options: "allow-from" is not one of deny, sameorigin`);
  });
});
