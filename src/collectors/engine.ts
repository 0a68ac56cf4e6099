import { Gauge } from 'prom-client';
import { num, obj, str } from '../parse/guards.js';
import type { CollectorModule } from './collector.js';

const INFO_LABELS = [
  'version', 'api_version', 'os', 'os_type', 'architecture', 'kernel_version',
  'storage_driver', 'logging_driver', 'cgroup_driver', 'cgroup_version',
] as const;

/** Engine facts from `GET /info`, asked on every scrape: that request is also what `docker_up` reports. */
export const engineCollector: CollectorModule = {
  name: 'engine',
  defaultEnabled: true,
  help: 'engine facts and reachability',
  create({ registry, docker }) {
    const registers = [registry];
    const up = new Gauge({ name: 'docker_up', help: 'Whether the Docker Engine answered the last scrape (1) or not (0).', registers });
    const info = new Gauge({ name: 'docker_engine_info', help: 'Docker Engine facts; always 1.', labelNames: INFO_LABELS, registers });
    const cpus = new Gauge({ name: 'docker_engine_cpus', help: 'CPUs the engine sees (NCPU).', registers });
    const memory = new Gauge({ name: 'docker_engine_memory_bytes', help: 'Memory the engine sees (MemTotal), in bytes.', registers });
    const containers = new Gauge({ name: 'docker_engine_containers', help: 'Containers by state, as the engine counts them.', labelNames: ['state'], registers });
    const images = new Gauge({ name: 'docker_engine_images', help: 'Images the engine holds.', registers });
    const scalars = [cpus, memory, images];
    up.set(0);
    // prom-client shows a label-less gauge as 0 until set; absent is the truth until the engine answers.
    for (const g of scalars) g.remove({});

    return {
      async update() {
        let payload: unknown;
        try {
          payload = await docker.get('/info', '/info');
        } catch (err) {
          up.set(0);
          // An engine that is away has no facts: stale ones would read as current.
          info.reset();
          containers.reset();
          for (const g of scalars) g.remove({});
          throw err;
        }
        up.set(1);
        const i = obj(payload) ?? {};
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
        setIf(images, num(i.Images));
        containers.reset();
        for (const [state, field] of [['running', 'ContainersRunning'], ['paused', 'ContainersPaused'], ['stopped', 'ContainersStopped']] as const) {
          const v = num(i[field]);
          if (v !== undefined) containers.set({ state }, v);
        }
      },
    };
  },
};

/** Sets a label-less gauge, or removes its series where the engine did not report the field. */
function setIf(gauge: Gauge, value: number | undefined): void {
  if (value === undefined) gauge.remove({});
  else gauge.set(value);
}
