import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { baseAction } from '../../src/parse/event.js';
import { cliFor, ENGINES, podman, TEST_IMAGE, TestContainers, waitFor, type Engine } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { value, type Sample } from '../helpers/prom.js';

/** Only the engine collector and the events collector: no inventory, one events stream. */
const ONLY_EVENTS = ['--no-collector.containers', '--no-collector.stats', '--no-collector.df'];

const created = new Map<Engine, TestContainers>();
/** The test containers of one engine, removed after the file. */
function containersOn(engine: Engine): TestContainers {
  let c = created.get(engine);
  if (!c) created.set(engine, (c = new TestContainers(engine)));
  return c;
}
const exporters: RunningExporter[] = [];
const watchers: ChildProcess[] = [];
afterAll(async () => {
  for (const w of watchers) if (w.exitCode === null) w.kill();
  for (const e of exporters) expect(await e.stop()).toBe(0);
  for (const c of created.values()) await c.removeAll();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A label only this run's objects carry: the events filter isolates them from colleagues' tests. */
const uniqueLabel = (what: string): string => `c3ev.${what}=${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

async function exporterWith(engine: Engine, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunningExporter> {
  const e = await startExporter([...engine.exporterArgs, ...ONLY_EVENTS, ...args], { env });
  exporters.push(e);
  await waitFor('the events stream to connect', async () => value(await e.samples(), 'docker_exporter_collector_success', { collector: 'events' }) === 1, 20_000, 100);
  return e;
}

/** docker_events_total as "type action" → count. */
function eventCounts(samples: Sample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) if (s.name === 'docker_events_total' && s.value > 0) out[`${s.labels.type} ${s.labels.action}`] = s.value;
  return out;
}

const total = (counts: Record<string, number>): number => Object.values(counts).reduce((a, b) => a + b, 0);

/**
 * `docker events --since <t0> --filter …` left running, so that the engine's small event buffer
 * (256 events, shared with everyone's tests) cannot lose ours before we read them; `window(t1)`
 * then counts what it listed up to t1, as `docker events --since t0 --until t1` does.
 */
function watchEvents(engine: Engine, since: number, filters: string[]) {
  const lines: string[] = [];
  const proc = spawn('docker', ['-H', engine.host, 'events', '--since', (since / 1000).toFixed(3), '--format', '{{json .}}', ...filters.flatMap((f) => ['--filter', f])], { stdio: ['ignore', 'pipe', 'pipe'] });
  watchers.push(proc);
  let buf = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  return {
    window(until: number): Record<string, number> {
      const out: Record<string, number> = {};
      for (const line of lines) {
        const e = JSON.parse(line) as { Type: string; Action: string; timeNano: number };
        if (e.timeNano / 1e6 > until) continue;
        const key = `${e.Type} ${baseAction(e.Action)}`;
        out[key] = (out[key] ?? 0) + 1;
      }
      return out;
    },
    get count(): number {
      return lines.length;
    },
    stop(): void {
      proc.kill();
    },
  };
}

/** A container's whole life, touching most container actions; every event carries `label`. */
async function lifecycle(engine: Engine, label: string): Promise<void> {
  const docker = cliFor(engine);
  const n = `c3ev${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const id = await containersOn(engine).run(['--name', n, '--label', label, '--health-cmd', 'true', '--health-interval', '1s']);
  // No systemd here to run Podman's probe timers: the test runs the probe as the timer would.
  if (engine.name === 'podman') await podman(['healthcheck', 'run', id]);
  await waitFor('healthy', async () => (await docker(['inspect', '--format', '{{.State.Health.Status}}', id])) === 'healthy', 20_000, 100);
  await docker(['exec', id, 'true']);
  await docker(['pause', id]);
  await docker(['unpause', id]);
  await docker(['rename', id, `${n}-renamed`]);
  // Podman 4.3's compatible API has no update (404), and `podman update` sends no event.
  if (engine.name === 'docker') await docker(['update', '--memory', '64m', '--memory-swap', '128m', id]);
  await docker(['kill', '-s', 'WINCH', id]); // ignored by sleep: a kill event and nothing else
  await docker(['restart', '-t', '0', id]);
  await docker(['stop', '-t', '0', id]);
  await docker(['start', id]);
  await docker(['rm', '-f', id]);
  // attach, die with 7, destroy
  await docker(['run', '--rm', '--label', label, '--label', 'docker-exporter-test=1', TEST_IMAGE, 'sh', '-c', 'exit 7']).catch(() => undefined);
}

/** Waits until the exporter has counted as many events as the CLI listed, and neither moves. */
async function settle(exporter: RunningExporter, watcher: { count: number }): Promise<void> {
  let last = -1;
  await waitFor('the exporter to count what docker events lists', async () => {
    const n = total(eventCounts(await exporter.samples()));
    const done = n === watcher.count && n === last;
    last = n;
    return done;
  }, 20_000, 500);
}

// The same tests on both engines (helpers/docker.ts ENGINES): each engine's own action names.
describe.each(ENGINES)('events collector against the real engine: $name', (engine: Engine) => {
  const docker = cliFor(engine);
  // What the lifecycle above makes each engine send. Podman 4.3 names actions its own way: remove
  // (destroy), exec (exec_create + exec_start), exec_died (exec_die), and adds init and cleanup;
  // it sends no update (it has none), and for `docker stop -t 0` kill, die, cleanup and only at
  // times a stop (seen in one CI run): stop is the one action allowed to be there or not.
  const LIFECYCLE_ACTIONS = engine.name === 'docker'
    ? ['attach', 'create', 'destroy', 'die', 'exec_create', 'exec_die', 'exec_start', 'health_status', 'kill', 'pause', 'rename', 'restart', 'start', 'stop', 'unpause', 'update']
    : ['attach', 'cleanup', 'create', 'die', 'exec', 'exec_died', 'health_status', 'init', 'kill', 'pause', 'remove', 'rename', 'restart', 'start', 'unpause'];
  const SOMETIMES: string[] = engine.name === 'docker' ? [] : ['container stop'];

  it('counts over a window exactly what docker events --since --until lists, with and without narrowing filters', async () => {
    const label = uniqueLabel('window');
    const byLabel = await exporterWith(engine, ['--events.filter', `label=${label}`]);
    // Podman 4.3 filters on its own name of the die event, `died` (`event=die` matches nothing
    // there, for the CLI and the exporter alike), though it sends the event as `die`.
    const died = engine.name === 'docker' ? 'event=die' : 'event=died';
    const narrowed = await exporterWith(engine, ['--events.filter', `label=${label}`, '--events.filter', 'event=start', '--events.filter', died]);
    const t0 = Date.now();
    const all = watchEvents(engine, t0, [`label=${label}`]);
    const startDie = watchEvents(engine, t0, [`label=${label}`, 'event=start', died]);
    expect(eventCounts(await byLabel.samples())).toEqual({});

    await lifecycle(engine, label);
    await settle(byLabel, all);
    await settle(narrowed, startDie);
    const t1 = Date.now();

    const expected = all.window(t1);
    // The engine sent the actions this test set out to produce (so the comparison means something).
    expect(Object.keys(expected).filter((k) => !SOMETIMES.includes(k)).sort()).toEqual(LIFECYCLE_ACTIONS.map((a) => `container ${a}`));
    expect(eventCounts(await byLabel.samples())).toEqual(expected);
    expect(eventCounts(await narrowed.samples())).toEqual(startDie.window(t1));
    expect(Object.keys(startDie.window(t1)).sort()).toEqual(['container die', 'container start']);
    all.stop();
    startDie.stop();
  });

  it('loses and double-counts nothing across a dropped stream, and counts the reconnect', async () => {
    const proxy = await cuttableProxy(engine.socket);
    try {
      const label = uniqueLabel('reconnect');
      const e = await exporterWith(engine, ['--no-collector.engine', '--docker.host', `tcp://127.0.0.1:${proxy.port}`, '--events.filter', `label=${label}`], { DOCKER_TLS_VERIFY: '' });
      const t0 = Date.now();
      const watcher = watchEvents(engine, t0, [`label=${label}`]);
      const n = `c3ev${process.pid}-rc-${Math.random().toString(36).slice(2, 7)}`;
      const id = await containersOn(engine).run(['--name', n, '--label', label]);
      await docker(['pause', id]);
      await docker(['unpause', id]);
      await settle(e, watcher);
      expect(value(await e.samples(), 'docker_exporter_events_reconnects_total')).toBe(0);

      // The connection drops and stays down while the engine goes on producing events.
      proxy.cut();
      await waitFor('the events collector to report the stream down', async () => value(await e.samples(), 'docker_exporter_collector_success', { collector: 'events' }) === 0, 10_000, 100);
      await docker(['exec', id, 'true']);
      await docker(['pause', id]);
      await docker(['unpause', id]);
      await docker(['kill', '-s', 'WINCH', id]);
      await sleep(500);
      proxy.restore();

      await waitFor('the stream to come back', async () => value(await e.samples(), 'docker_exporter_collector_success', { collector: 'events' }) === 1, 20_000, 100);
      await docker(['rm', '-f', id]);
      await settle(e, watcher);
      const samples = await e.samples();
      expect(eventCounts(samples)).toEqual(watcher.window(Date.now()));
      // Podman's exec is one event, and its `rm -f` of a running container sends no kill.
      expect(eventCounts(samples)).toMatchObject(
        engine.name === 'docker'
          ? { 'container exec_create': 1, 'container pause': 2, 'container unpause': 2, 'container kill': 2 }
          : { 'container exec': 1, 'container pause': 2, 'container unpause': 2, 'container kill': 1 },
      );
      expect(value(samples, 'docker_exporter_events_reconnects_total')).toBe(1);
      watcher.stop();
    } finally {
      await proxy.close();
    }
  });

});

describe('events collector flags', () => {
  it.each([
    [['--events.filter', 'colour=red'], '--events.filter: unknown key "colour"'],
    [['--events.filter', 'type=containers'], '--events.filter: unknown type "containers"'],
    [['--events.filter', 'nonsense'], '--events.filter: "nonsense" is not KEY=VALUE'],
  ])('refuses %j with exit status 2 and a clear message', async (args, message) => {
    const err = await startExporter(args, { timeoutMs: 15_000 }).then(
      async (e) => {
        await e.stop();
        return 'started';
      },
      (e: Error) => e.message,
    );
    expect(err).toMatch(/exporter exited with 2 before listening/);
    expect(err).toContain(message);
  });
});

/** A TCP proxy to the engine's socket whose connections the test can cut, and refuse, at will. */
async function cuttableProxy(socket: string) {
  const pairs = new Set<net.Socket>();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(socket);
    pairs.add(client).add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(client);
      pairs.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut(): void {
      refusing = true;
      for (const s of pairs) s.destroy();
    },
    restore(): void {
      refusing = false;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of pairs) s.destroy();
        server.close(() => r());
      }),
  };
}
