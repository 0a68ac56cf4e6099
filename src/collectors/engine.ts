import { Gauge } from 'prom-client';
import type { EngineApi } from '../docker/client.js';
import { BackgroundRefresh } from '../helpers.js';
import { num, obj, PayloadError, str, typeName } from '../parse/guards.js';
import type { CollectorModule } from './collector.js';

const INFO_LABELS = [
  'version', 'api_version', 'os', 'os_type', 'architecture', 'kernel_version',
  'storage_driver', 'logging_driver', 'cgroup_driver', 'cgroup_version',
] as const;

/**
 * How old the engine facts may get. `GET /info` is one of the engine's costliest calls (40–110 ms
 * on a busy 20.10 dockerd, which walks its containers, images and storage driver for it): asked on
 * every scrape it was most of the scrape's time. The facts it gives change rarely.
 */
export const INFO_MAX_AGE_MS = 30_000;

/**
 * The deadline of a scrape's ping (and of /readyz's), whatever --docker.timeout says: an engine that
 * cannot answer `/_ping` in a second is down for the scrape, which must answer `docker_up 0` long
 * before Prometheus gives up on it.
 */
export const PING_TIMEOUT_MS = 1000;

/** Per engine client: the last `GET /info` answer and when it came, and the one in flight. */
const infoAnswers = new WeakMap<EngineApi, { payload?: unknown; at: number; pending?: Promise<unknown> }>();

/**
 * `GET /info`, shared by the collectors that read it (this one, swarm): the answer in flight if
 * there is one, else the last one if it is at most `maxAgeMs` old, else a new request. The engine
 * collector asks with 0 (it keeps its own facts and judges their age), so a payload it refused is
 * never handed back to it; the swarm collector then reads the same answer instead of asking again.
 */
export function sharedInfo(docker: EngineApi, maxAgeMs: number): Promise<unknown> {
  let entry = infoAnswers.get(docker);
  if (!entry) infoAnswers.set(docker, (entry = { at: -Infinity }));
  if (entry.pending) return entry.pending;
  if (performance.now() - entry.at <= maxAgeMs) return Promise.resolve(entry.payload);
  const e = entry;
  const pending = docker.get('info').then((payload) => {
    e.payload = payload;
    e.at = performance.now();
    return payload;
  });
  e.pending = pending;
  const done = (): void => void (e.pending === pending && (e.pending = undefined));
  pending.then(done, done);
  return pending;
}

/** How long the first scrape waits for the first engine facts; later scrapes never wait for them. */
const FIRST_INFO_WAIT_MS = 1000;

/**
 * `docker_up` from a `GET /_ping` on every scrape (the engine answers it without work); the engine
 * facts from `GET /info`, refreshed in the background once they are older than INFO_MAX_AGE_MS.
 */
export const engineCollector: CollectorModule = {
  name: 'engine',
  defaultEnabled: true,
  help: 'engine facts and reachability (docker_up, docker_engine_*)',
  needsInventory: false,
  create({ registry, docker, config, health, metrics }) {
    const registers = [registry];
    const up = new Gauge({ name: 'docker_up', help: 'Whether the Docker Engine answered the last scrape\'s ping (1) or not (0).', registers });
    const info = new Gauge({ name: 'docker_engine_info', help: 'Docker Engine facts (GET /info, at most 30 s old); always 1.', labelNames: INFO_LABELS, registers });
    const cpus = new Gauge({ name: 'docker_engine_cpus', help: 'CPUs the engine sees (NCPU).', registers });
    const memory = new Gauge({ name: 'docker_engine_memory_bytes', help: 'Memory the engine sees (MemTotal), in bytes.', registers });
    const containers = new Gauge({ name: 'docker_engine_containers', help: 'Containers by state, as the engine counts them (GET /info, at most 30 s old).', labelNames: ['state'], registers });
    const images = new Gauge({ name: 'docker_engine_images', help: 'Images the engine holds (GET /info, at most 30 s old).', registers });
    // cAdvisor's names for the same two facts, so its dashboards' "% of the machine" panels work.
    const machineCores = new Gauge({ name: 'machine_cpu_cores', help: 'Number of logical CPU cores (the engine\'s NCPU; cAdvisor\'s name).', registers });
    const machineMemory = new Gauge({ name: 'machine_memory_bytes', help: 'Amount of memory installed on the machine, in bytes (the engine\'s MemTotal; cAdvisor\'s name).', registers });
    const scalars = [cpus, memory, images, machineCores, machineMemory];
    up.set(0);
    // prom-client shows a label-less gauge as 0 until set; absent is the truth until the engine answers.
    for (const g of scalars) g.remove({});

    const facts = new BackgroundRefresh(
      // sharedInfo with 0: a payload `apply` refused is never handed back to it as fresh.
      () => health.run('engine-info', 2 * config.docker.timeoutMs, async () => apply(await sharedInfo(docker, 0))),
      INFO_MAX_AGE_MS,
      FIRST_INFO_WAIT_MS,
      () => new Error(`GET /info has not answered within ${FIRST_INFO_WAIT_MS} ms; its facts follow when it does`),
    );
    const forget = (): void => {
      // An engine that is away has no facts: stale ones would read as current.
      info.reset();
      containers.reset();
      for (const g of scalars) g.remove({});
      facts.expire();
    };
    const apply = (payload: unknown): void => {
      const i = obj(payload);
      // Not the engine's facts (a proxy's page, a broken engine): a failure that keeps the last good
      // facts, never an info series with empty labels.
      if (!i || typeof i.ServerVersion !== 'string') {
        metrics.parseErrors.inc({ source: 'info' });
        throw new PayloadError(`GET /info: expected an object with a ServerVersion, got ${i ? 'an object without one' : typeName(payload)}`);
      }
      info.reset();
      info.set(
        {
          version: str(i.ServerVersion) ?? '',
          api_version: docker.engineApiVersion ?? '',
          os: str(i.OperatingSystem) ?? '',
          os_type: str(i.OSType) ?? '',
          architecture: str(i.Architecture) ?? '',
          kernel_version: str(i.KernelVersion) ?? '',
          storage_driver: str(i.Driver) ?? '',
          logging_driver: str(i.LoggingDriver) ?? '',
          cgroup_driver: str(i.CgroupDriver) ?? '',
          cgroup_version: str(i.CgroupVersion) ?? '',
        },
        1,
      );
      setIf(cpus, num(i.NCPU));
      setIf(memory, num(i.MemTotal));
      setIf(machineCores, num(i.NCPU));
      setIf(machineMemory, num(i.MemTotal));
      setIf(images, num(i.Images));
      containers.reset();
      for (const [state, field] of [['running', 'ContainersRunning'], ['paused', 'ContainersPaused'], ['stopped', 'ContainersStopped']] as const) {
        const v = num(i[field]);
        if (v !== undefined) containers.set({ state }, v);
      }
    };

    return {
      async update() {
        try {
          await docker.get('ping', { timeoutMs: Math.min(PING_TIMEOUT_MS, config.docker.timeoutMs) });
        } catch (err) {
          up.set(0);
          forget();
          throw err;
        }
        up.set(1);
        // Until the first facts are in, the scrape waits a little for them; afterwards it never does.
        await facts.due();
        // Why /info failed while the engine answered pings (a proxy that refuses it, say).
        if (facts.error) throw facts.error;
      },
    };
  },
};

/** Sets a label-less gauge, or removes its series where the engine did not report the field. */
function setIf(gauge: Gauge, value: number | undefined): void {
  if (value === undefined) gauge.remove({});
  else gauge.set(value);
}
