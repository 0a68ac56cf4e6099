import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startFakeEngine, type FakeEngine, type FakeEngineStatus } from '../../bench/fake-engine.js';
import { createApp, type App } from '../../src/app.js';
import { buildConfig } from '../helpers/config.js';
import { comparable, E2E_GOLDEN } from '../helpers/golden.js';
import { parseMetrics, findAll, value } from '../helpers/prom.js';

/**
 * The whole /metrics of the app, served by its real web server, against the bench's fake engine,
 * diffed against test/fixtures/e2e/metrics.golden.prom (as node_exporter's end-to-end test diffs
 * fixtures/e2e-output.txt). UPDATE_GOLDEN=1 rewrites the file; review its diff before committing it.
 * A refactoring that changes nothing a user sees leaves it byte for byte as it is.
 *
 * The inputs are fixed so that the output is the same every run:
 * - the wall clock is stopped (only `Date`; timers and performance.now() run): the fake engine
 *   derives creation and start times, stats counters and sample times from it, the exporter its
 *   events `since` and the df success time;
 * - a known container set, created before the exporter starts;
 * - one stats sample per running container: the exporter samples each when the
 *   inventory first reads it, and the 10-minute poll interval keeps a second round (which would
 *   add requests) out of the test; df runs once at start, its next run 5 minutes later;
 * - the fake engine answers /version late, so that the df collector's first run always starts
 *   before the API version is negotiated (it then pings first) instead of racing it;
 * - the snapshot is taken once the engine has answered every request the exporter makes at start,
 *   and exactly two scrapes are made (each pings the engine once).
 * What no input fixes is replaced in the compared text only, in test/helpers/golden.ts.
 */

/** 2024-03-01T12:00:00Z: the fake engine's containers were created an hour before. */
const NOW = Date.UTC(2024, 2, 1, 12);

/** idle, busy, idle, limited (with a health check, limits, block I/O and a volume): KIND_CYCLE's first four. */
const INITIAL = 4;

let dir: string;
let engine: FakeEngine;
let app: App;
let base: string;
let snapshot: string;

/**
 * States of the start-up the snapshot waits for that did not come within WAIT_MS. The snapshot is
 * taken all the same: a change of behaviour (another request, one less) then shows in the diff
 * against the golden file, instead of as a timeout.
 */
const missed: string[] = [];
const WAIT_MS = 5000;

/** Waits for `check` to be true, polling with real timers (vi.waitFor would move the stopped clock). */
async function until(what: string, check: (s: FakeEngineStatus) => boolean): Promise<void> {
  const deadline = performance.now() + WAIT_MS;
  while (!check(engine.status())) {
    if (performance.now() > deadline) {
      missed.push(`${what}: engine status ${JSON.stringify(engine.status())}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Two turns of the event loop. The exporter runs in this process: once the fake engine has written
 * an answer, the next poll phase of the loop reads it, and the exporter's handling of it (parse,
 * store) ends in that phase's microtasks. Two turns make sure a whole poll phase started after
 * the answer was written.
 */
async function loopTurns(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
}

beforeAll(async () => {
  vi.useFakeTimers({ toFake: ['Date'], now: NOW });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-golden-'));
  const socketPath = path.join(dir, 'docker.sock');
  engine = await startFakeEngine({ socketPath, containers: INITIAL, tickMs: 50, versionDelayMs: 200 });
  // Before the exporter starts, at its start instant (the clock stands still): an exited container
  // it will list, and one that comes and goes. Their events are stamped with that instant, which
  // the events collector's `since` includes: it counts them; the inventory's stream asks for no
  // history and sees none of them.
  engine.add('exited');
  engine.remove(engine.add('busy'));
  const containers = engine.ids().length;
  const running = engine.status().running;

  const config = buildConfig(
    ['--docker.host', `unix://${socketPath}`, '--web.listen-address', '127.0.0.1:0', '--stats.source', 'engine', '--stats.mode', 'poll', '--stats.interval', '10m'],
    {},
  );
  app = createApp(config, pino({ level: 'silent' }));
  base = `http://127.0.0.1:${(await app.start()).port}`;

  // Everything the exporter asks at start: the list and each inspect, a one-shot stats sample of
  // each running container (answered: a frame was made), df, the one image reference the
  // containers share, and both events streams open.
  await until('the exporter\'s start-up requests, answered', (s) =>
    s.requests['/containers/json'] === 1 &&
    s.requests['/containers/{id}/json'] === containers &&
    s.requests['/images/{name}/json'] === 1 &&
    s.requests['/containers/{id}/stats'] === running &&
    s.statsSamples === running &&
    s.requests['/system/df'] === 1 &&
    s.eventStreams === 2,
  );
  // The first scrape asks /info (refreshed at most every 30 s, so once in this test); the snapshot
  // is the second, once that answer is in.
  expect((await fetch(`${base}/metrics`)).status).toBe(200);
  await until('GET /info', (s) => s.requests['/info'] === 1);
  await loopTurns();
  const res = await fetch(`${base}/metrics`);
  expect(res.status).toBe(200);
  snapshot = await res.text();
}, 4 * WAIT_MS);

afterAll(async () => {
  await app?.stop();
  await engine?.close();
  vi.useRealTimers();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('end to end: the whole /metrics against the fake engine', () => {
  it('is complete: every collector succeeded, every running container has its stats', () => {
    // Told apart from a change of output: a snapshot taken too early fails here, not only in the diff.
    expect(missed).toEqual([]);
    const s = parseMetrics(snapshot);
    expect(findAll(s, 'docker_exporter_collector_success').map((x) => [x.labels.collector, x.value]).sort()).toEqual(
      [['containers', 1], ['df', 1], ['engine', 1], ['events', 1], ['stats', 1], ['swarm', 1]],
    );
    expect(findAll(s, 'container_last_seen')).toHaveLength(engine.status().running);
    expect(value(s, 'docker_exporter_df_last_success_timestamp_seconds')).toBe(NOW / 1000);
  });

  it('matches test/fixtures/e2e/metrics.golden.prom', () => {
    const got = comparable(snapshot);
    if (process.env.UPDATE_GOLDEN === '1') {
      fs.mkdirSync(new URL('.', E2E_GOLDEN), { recursive: true });
      fs.writeFileSync(E2E_GOLDEN, got);
    }
    expect(got).toBe(fs.readFileSync(E2E_GOLDEN, 'utf8'));
  });
});
