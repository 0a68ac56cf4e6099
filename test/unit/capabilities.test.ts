import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Backoff } from '../../src/backoff.js';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { ContainerMetrics } from '../../src/collectors/containers.js';
import { failureOf, logsCollector } from '../../src/collectors/logs.js';
import { EngineStatus } from '../../src/docker/errors.js';
import { routePath } from '../../src/docker/routes.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { ImageRefs, isPinned } from '../../src/inventory/image-refs.js';
import { parseImageId } from '../../src/parse/image.js';
import { Inventory, type ContainerRecord } from '../../src/inventory/inventory.js';
import { formatPorts, gpuDevices, logFileOf, parseContainerInspect, PORTS_LABEL_MAX, publishedPorts } from '../../src/parse/container.js';
import { PayloadError } from '../../src/parse/guards.js';
import { buildConfig } from '../helpers/config.js';
import { parseMetrics, value } from '../helpers/prom.js';
import { FakeEngine, hexId, until } from './fake-docker.js';

// Issue 18 items 2–5 on recorded payloads: ports, restart policy, log files and GPUs from inspect
// (test/fixtures/inspect/{ports,local,gpu-*}.json, recorded from dockerd 20.10: `docker create
// --gpus …` records the device requests without a GPU), the image reference tracker against the
// fake engine, and the logs collector against files in a temporary root. The real engine's side is
// test/integration/capabilities.test.ts.

const DIR = new URL('../fixtures/inspect/', import.meta.url);
const fixture = (name: string): Record<string, any> => JSON.parse(fs.readFileSync(new URL(name, DIR), 'utf8'));
const logger = pino({ level: 'silent' });

describe('inspect: restart policy and published ports', () => {
  it('formats the recorded published ports sorted by container port, protocol and address, exposed-only ones left out', () => {
    const info = parseContainerInspect(fixture('ports.json'));
    // docker run --restart unless-stopped -p 127.0.0.1:18081:80 -p 8443:443/tcp -p 5353:53/udp --expose 9000
    expect(info.restartPolicy).toBe('unless-stopped');
    expect(info.ports).toBe('0.0.0.0:5353->53/udp,[::]:5353->53/udp,127.0.0.1:18081->80/tcp,0.0.0.0:8443->443/tcp,[::]:8443->443/tcp');
  });

  it('says "no" for the engine\'s default policy and "on-failure" without its retry count', () => {
    expect(parseContainerInspect(fixture('created.json')).restartPolicy).toBe('no');
    expect(parseContainerInspect(fixture('restarting.json')).restartPolicy).toBe('always');
    const local = fixture('local.json');
    expect(local.HostConfig.RestartPolicy).toEqual({ Name: 'on-failure', MaximumRetryCount: 3 });
    expect(parseContainerInspect(local).restartPolicy).toBe('on-failure');
    const empty = fixture('created.json');
    empty.HostConfig.RestartPolicy = { Name: '', MaximumRetryCount: 0 };
    expect(parseContainerInspect(empty).restartPolicy).toBe('no');
  });

  it('has no ports for a stopped container (the engine binds none) and skips entries the engine would not write', () => {
    expect(parseContainerInspect(fixture('exited-7.json')).ports).toBe('');
    expect(publishedPorts({ '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '' }], bogus: [{ HostIp: '', HostPort: '1' }], '81/tcp': [{ HostPort: '99999' }], '82': [{ HostIp: '', HostPort: '8082' }] })).toEqual([
      { hostIp: '', hostPort: 8082, containerPort: 82, protocol: 'tcp' },
    ]);
    expect(formatPorts(publishedPorts({ '82': [{ HostIp: '', HostPort: '8082' }] }))).toBe('0.0.0.0:8082->82/tcp');
    // A wrong type where the engine keeps its port map is a broken payload, as for every member read.
    const broken = fixture('ports.json');
    broken.NetworkSettings = 'x';
    expect(() => parseContainerInspect(broken)).toThrow(PayloadError);
  });

  it(`cuts the label at ${PORTS_LABEL_MAX} characters between bindings and says how many were cut`, () => {
    const many = Array.from({ length: 300 }, (_, i) => ({ hostIp: '0.0.0.0', hostPort: 20000 + i, containerPort: 10000 + i, protocol: 'tcp' }));
    const text = formatPorts(many);
    expect(text.length).toBeLessThanOrEqual(PORTS_LABEL_MAX);
    const m = /^(.*),\+(\d+)$/.exec(text)!;
    const kept = m[1]!.split(',');
    expect(kept[0]).toBe('0.0.0.0:20000->10000/tcp');
    expect(kept.length + Number(m[2])).toBe(300);
    // Every kept one whole, in order.
    kept.forEach((k, i) => expect(k).toBe(`0.0.0.0:${20000 + i}->${10000 + i}/tcp`));
    expect(formatPorts(many.slice(0, 3))).toBe('0.0.0.0:20000->10000/tcp,0.0.0.0:20001->10001/tcp,0.0.0.0:20002->10002/tcp');
  });
});

describe('inspect: the log file', () => {
  it('is LogPath for json-file, <containers>/<id>/local-logs/container.log for local, none otherwise', () => {
    const json = parseContainerInspect(fixture('exited-7.json'));
    expect(json.logDriver).toBe('json-file');
    expect(json.logPath).toBe(`/var/lib/docker/containers/${json.id}/${json.id}-json.log`);
    const local = parseContainerInspect(fixture('local.json'));
    expect(fixture('local.json').LogPath).toBe('');
    expect(local.logDriver).toBe('local');
    expect(local.logPath).toBe(`/var/lib/docker/containers/${local.id}/local-logs/container.log`);
    // Never started: no file yet.
    expect(parseContainerInspect(fixture('created.json')).logPath).toBe('');
    expect(logFileOf(hexId(1), 'none', '', '/var/lib/docker/containers/x/hostname')).toBe('');
    expect(logFileOf(hexId(1), 'journald', '', '/var/lib/docker/containers/x/hostname')).toBe('');
  });

  it('finds a local log from a hostname file lent by another container (--network container:x)', () => {
    const id = hexId(7);
    expect(logFileOf(id, 'local', '', `/data/docker/containers/${hexId(8)}/hostname`)).toBe(`/data/docker/containers/${id}/local-logs/container.log`);
    expect(logFileOf(id, 'local', '', '')).toBe('');
    expect(logFileOf(id, 'local', '', 'hostname')).toBe('');
    // A path that would lead out of --path.rootfs is not followed.
    expect(logFileOf(id, 'json-file', '/var/lib/docker/containers/../../../etc/shadow', '')).toBe('');
    expect(logFileOf(id, 'json-file', 'relative/x-json.log', '')).toBe('');
    expect(logFileOf(id, 'local', '', '/var/lib/docker/containers/../../etc/x/hostname')).toBe('');
    expect(logFileOf(id, 'json-file', `/var/lib/docker/containers/${id}/${id}-json.log`, '')).toBe(`/var/lib/docker/containers/${id}/${id}-json.log`);
  });
});

describe('inspect: GPUs', () => {
  it('reads the recorded --gpus requests: all, device ids, a count', () => {
    expect(fixture('gpu-all.json').HostConfig.DeviceRequests).toEqual([{ Driver: '', Count: -1, DeviceIDs: null, Capabilities: [['gpu']], Options: {} }]);
    expect(parseContainerInspect(fixture('gpu-all.json')).gpus).toEqual(['all']);
    expect(parseContainerInspect(fixture('gpu-ids.json')).gpus).toEqual(['0', 'GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a']);
    // --gpus 2: the engine hands the NVIDIA hook the first two; NVIDIA_VISIBLE_DEVICES=3 is ignored under runc.
    const two = fixture('gpu-two.json');
    expect(two.Config.Env).toContain('NVIDIA_VISIBLE_DEVICES=3');
    expect(two.HostConfig.Runtime).toBe('runc');
    expect(parseContainerInspect(two).gpus).toEqual(['0', '1']);
    expect(parseContainerInspect(fixture('healthy.json')).gpus).toEqual([]);
  });

  it('reads NVIDIA_VISIBLE_DEVICES under the NVIDIA runtime only: all, none, void, lists of indexes and UUIDs', () => {
    const withEnv = (value: string, runtime = 'nvidia'): string[] => {
      const p = fixture('healthy.json');
      p.HostConfig.Runtime = runtime;
      p.Config.Env = [...(p.Config.Env ?? []), 'NVIDIA_VISIBLE_DEVICES=9', `NVIDIA_VISIBLE_DEVICES=${value}`];
      return parseContainerInspect(p).gpus;
    };
    expect(withEnv('all')).toEqual(['all']);
    expect(withEnv('none')).toEqual([]);
    expect(withEnv('void')).toEqual([]);
    expect(withEnv('')).toEqual([]);
    expect(withEnv('0,GPU-aaaa, 2')).toEqual(['0', 'GPU-aaaa', '2']);
    // A CUDA image sets NVIDIA_VISIBLE_DEVICES=all for every container: under runc it gives none.
    expect(withEnv('all', 'runc')).toEqual([]);
    // A request and the variable together: each device once; `all` covers the rest.
    const p = fixture('gpu-two.json');
    p.HostConfig.Runtime = 'nvidia';
    expect(parseContainerInspect(p).gpus).toEqual(['0', '1', '3']);
    p.Config.Env.push('NVIDIA_VISIBLE_DEVICES=1,all');
    expect(parseContainerInspect(p).gpus).toEqual(['all']);
  });

  it('takes the nvidia driver and CDI requests, leaves other devices out', () => {
    expect(gpuDevices([{ Driver: 'nvidia', Count: 1, DeviceIDs: null, Capabilities: null }], 'runc', [])).toEqual(['0']);
    expect(gpuDevices([{ Driver: 'cdi', DeviceIDs: ['nvidia.com/gpu=1', 'nvidia.com/gpu=all', 'vendor.com/fpga=0'] }], 'runc', [])).toEqual(['all']);
    expect(gpuDevices([{ Driver: 'cdi', DeviceIDs: ['nvidia.com/gpu=1', 'vendor.com/fpga=0'] }], 'runc', [])).toEqual(['1']);
    expect(gpuDevices([{ Driver: '', Count: -1, Capabilities: [['compute', 'utility']] }], 'runc', [])).toEqual([]);
    expect(gpuDevices([null, 'x', { Capabilities: [['gpu']], Count: 0 }], 'runc', [])).toEqual([]);
  });
});

describe('containers collector: the new series', () => {
  const LABELS = ['id', 'name', 'image'];
  const rec = (name: string, over: Partial<ContainerRecord> = {}): ContainerRecord => {
    const info = { ...parseContainerInspect(fixture(`${name}.json`)), ...over };
    return { ...info, promLabels: Object.freeze({ id: info.id, name: info.name, image: info.image }), oomEvents: 0 };
  };

  it('renders gpu_info per device, info with restart_policy and ports, image_outdated as the tracker says', async () => {
    const registry = new Registry();
    let outdated: 0 | 1 | undefined = 1;
    const m = new ContainerMetrics(registry, LABELS, () => outdated);
    const ids = rec('gpu-ids');
    const ports = rec('ports');
    m.render([ids, ports]);
    let s = parseMetrics(await registry.metrics());
    expect(s.filter((x) => x.name === 'docker_container_gpu_info').map((x) => [x.labels.name, x.labels.device, x.value])).toEqual([
      ['c3f-gpu-ids', '0', 1],
      ['c3f-gpu-ids', 'GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a', 1],
    ]);
    const info = s.find((x) => x.name === 'docker_container_info' && x.labels.name === 'c3f-ports')!;
    expect([info.labels.restart_policy, info.labels.ports]).toEqual(['unless-stopped', ports.ports]);
    expect(value(s, 'docker_container_image_outdated', { name: 'c3f-ports' })).toBe(1);
    // The tracker's answer changes while the record does not: the next render follows it.
    outdated = 0;
    m.render([ids, ports]);
    s = parseMetrics(await registry.metrics());
    expect(value(s, 'docker_container_image_outdated', { name: 'c3f-ports' })).toBe(0);
    outdated = undefined;
    m.render([ids, ports]);
    s = parseMetrics(await registry.metrics());
    expect(value(s, 'docker_container_image_outdated', { name: 'c3f-ports' })).toBeUndefined();
    m.render([]);
    expect(parseMetrics(await registry.metrics()).filter((x) => x.name.startsWith('docker_container_'))).toEqual([]);
  });
});

describe('image references', () => {
  it('is pinned for a digest or the image id, not for a tag', () => {
    const id = 'sha256:333f86d5d92a0070228e1678828b60a77dc3717b9da7680ed471d17fd3b8b16c';
    expect(isPinned('busybox@sha256:abc', id)).toBe(true);
    expect(isPinned('333f86d5d92a', id)).toBe(true);
    expect(isPinned(id, id)).toBe(true);
    expect(isPinned('333f86d5d92b', id)).toBe(false);
    expect(isPinned('busybox:latest', id)).toBe(false);
    expect(isPinned('333f86d5', id)).toBe(false);
  });

  it('encodes a reference whole into the image route, and reads the id', () => {
    expect(routePath('image', 'docker-exporter-test/busybox:latest')).toBe('/images/docker-exporter-test%2Fbusybox%3Alatest/json');
    expect(() => routePath('image')).toThrow('/images/{name}/json needs a name');
    expect(parseImageId({ Id: 'sha256:1' })).toBe('sha256:1');
    expect(() => parseImageId({ RepoTags: [] })).toThrow(PayloadError);
    expect(() => parseImageId('x')).toThrow(PayloadError);
  });

  const stops: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
  });

  /** A fake engine whose images resolve as `images` says (a missing one answers 404). */
  function rig() {
    const engine = new FakeEngine();
    const images = new Map<string, string | Error>();
    const asked: string[] = [];
    engine.on('image', ({ id }) => {
      asked.push(id!);
      const v = images.get(id!);
      if (v instanceof Error) throw v;
      if (v === undefined) throw new EngineStatus(`/images/{name}/json: HTTP 404: No such image: ${id}`, 404, '/images/{name}/json');
      return v === 'garbage' ? { nope: 1 } : { Id: v };
    });
    const registry = new Registry();
    const metrics = createExporterMetrics(registry);
    const inventory = new Inventory({ config: buildConfig([], {}), docker: engine, logger, metrics, backoff: () => new Backoff(1, 5) });
    const refs = new ImageRefs({ docker: engine, inventory, logger, metrics, backoff: new Backoff(1, 5) });
    stops.push(() => refs.stop(), () => inventory.stop());
    const put = (n: number, ref: string, imageId: string): void => {
      engine.put(hexId(n), `c${n}`);
      const c = engine.containers.get(hexId(n))!;
      c.Image = imageId;
      (c.Config as Record<string, unknown>).Image = ref;
    };
    const outdated = (n: number) => {
      const record = inventory.get(hexId(n));
      return record && refs.outdated(record);
    };
    return { engine, images, asked, inventory, refs, put, outdated, registry };
  }

  const OLD = 'sha256:' + 'a'.repeat(64);
  const NEW = 'sha256:' + 'b'.repeat(64);

  /** A rig whose container 1 runs OLD from `app:1`, that reference answering `answer`, seen up to date. */
  async function upToDate(answer: string) {
    const r = rig();
    r.images.set('app:1', answer);
    r.put(1, 'app:1', OLD);
    r.refs.start();
    r.inventory.start();
    await until(() => r.outdated(1) === 0);
    return r;
  }

  it('resolves each distinct reference once, and all again after an image event that can move a name', async () => {
    const r = rig();
    r.images.set('app:1', OLD);
    r.images.set('db', OLD);
    r.put(1, 'app:1', OLD);
    r.put(2, 'app:1', OLD);
    r.put(3, 'db', OLD);
    r.put(4, `app@sha256:${'c'.repeat(64)}`, OLD);
    r.put(5, 'aaaaaaaaaaaa', OLD);
    r.refs.start();
    r.inventory.start();
    await until(() => r.inventory.current && r.outdated(1) !== undefined && r.outdated(3) !== undefined);
    await r.refs.idle();
    expect([...r.asked].sort()).toEqual(['app:1', 'db']);
    expect([1, 2, 3, 4, 5].map(r.outdated)).toEqual([0, 0, 0, 0, 0]);

    // docker tag other app:1: the reference now names another image.
    r.images.set('app:1', NEW);
    r.asked.length = 0;
    r.engine.send({ type: 'image', action: 'tag', id: NEW, attributes: { name: 'app:1' } });
    await until(() => r.outdated(1) === 1);
    await r.refs.idle();
    expect([1, 2, 3, 4, 5].map(r.outdated)).toEqual([1, 1, 0, 0, 0]);
    expect([...r.asked].sort()).toEqual(['app:1', 'db']);

    // push and save move no name: nothing is asked.
    r.asked.length = 0;
    r.engine.send({ type: 'image', action: 'push', id: NEW, attributes: { name: 'app:1' } });
    r.engine.send({ type: 'container', action: 'start', id: hexId(3) });
    await until(() => r.engine.inspects.filter((i) => i === hexId(3)).length >= 2);
    await r.refs.idle();
    expect(r.asked).toEqual([]);

    // untagged: it names nothing local, which says nothing of what a `docker run` would get.
    r.images.delete('app:1');
    r.engine.send({ type: 'image', action: 'untag', id: NEW, attributes: { name: NEW } });
    await until(() => r.outdated(1) === undefined);
    expect(r.outdated(3)).toBe(0);
  });

  it('resolves a new reference when its first container appears, and forgets one no container uses', async () => {
    const r = rig();
    r.images.set('app:1', OLD);
    r.refs.start();
    r.inventory.start();
    await until(() => r.inventory.current);
    expect(r.asked).toEqual([]);
    r.put(1, 'app:1', NEW);
    r.engine.send({ type: 'container', action: 'create', id: hexId(1) });
    await until(() => r.inventory.get(hexId(1)) !== undefined && r.outdated(1) !== undefined);
    expect(r.outdated(1)).toBe(1);
    expect(r.asked).toEqual(['app:1']);
    r.engine.containers.delete(hexId(1));
    r.engine.send({ type: 'container', action: 'destroy', id: hexId(1) });
    await until(() => r.inventory.get(hexId(1)) === undefined);
    r.asked.length = 0;
    r.engine.send({ type: 'image', action: 'pull', id: 'app:1' });
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(r.asked).toEqual([]);
  });

  it('keeps the last id through a failed resolve, counts a garbage answer, and retries', async () => {
    const r = await upToDate(OLD);
    r.images.set('app:1', new Error('socket hang up'));
    r.engine.send({ type: 'image', action: 'load', id: NEW });
    await until(() => r.asked.length >= 3);
    expect(r.outdated(1)).toBe(0);
    r.images.set('app:1', 'garbage');
    await until(() => r.asked.length >= 5);
    expect(r.outdated(1)).toBe(0);
    const parseErrors = parseMetrics(await r.registry.metrics()).find((x) => x.name === 'docker_exporter_parse_errors_total' && x.labels.source === 'image');
    expect(parseErrors!.value).toBeGreaterThanOrEqual(1);
    r.images.set('app:1', NEW);
    await until(() => r.outdated(1) === 1);
  });

  it('compares ids with or without their sha256: prefix, and follows a Podman image removal', async () => {
    const r = await upToDate(OLD.slice('sha256:'.length));
    r.images.set('app:1', NEW.slice('sha256:'.length));
    r.engine.send({ type: 'image', action: 'remove', id: OLD });
    await until(() => r.outdated(1) === 1);
  });

  it('resolves every reference again after the events stream reconnects (image events may have been missed)', async () => {
    const r = await upToDate(OLD);
    // Re-tagged with no event reaching the exporter (as one the engine no longer holds when the
    // stream comes back): the resync after the reconnect resolves it anyway.
    r.images.set('app:1', NEW);
    r.engine.dropStreams();
    await until(() => r.outdated(1) === 1);
  });
});

describe('logs collector', () => {
  let root: string;
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  function rig(records: ContainerRecord[]) {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'logs-'));
    const registry = new Registry();
    const inventory = { labelNames: ['id', 'name', 'image'], list: () => records };
    const deps = { registry, inventory, config: buildConfig(['--path.rootfs', root], {}), logger } as unknown as CollectorDeps;
    return { registry, collector: logsCollector.create(deps) };
  }
  const rec = (n: number, logDriver: string, logPath: string): ContainerRecord =>
    ({ id: hexId(n), logDriver, logPath, promLabels: Object.freeze({ id: hexId(n), name: `c${n}`, image: 'busybox' }) }) as unknown as ContainerRecord;

  it('reports each json-file and local log file\'s size under --path.rootfs; a missing one is counted, not fatal', async () => {
    const records = [
      rec(1, 'json-file', `/var/lib/docker/containers/${hexId(1)}/${hexId(1)}-json.log`),
      rec(2, 'local', `/var/lib/docker/containers/${hexId(2)}/local-logs/container.log`),
      rec(3, 'json-file', `/var/lib/docker/containers/${hexId(3)}/${hexId(3)}-json.log`),
      rec(4, 'journald', ''),
      rec(5, 'json-file', ''),
    ];
    const { registry, collector } = rig(records);
    for (const [n, file, size] of [[1, `${hexId(1)}-json.log`, 1234], [2, 'local-logs/container.log', 77]] as const) {
      const full = path.join(root, 'var/lib/docker/containers', hexId(n), file);
      fs.mkdirSync(path.dirname(full), { recursive: true });
      fs.writeFileSync(full, Buffer.alloc(size));
    }
    // A rotated file is not the current one.
    fs.writeFileSync(path.join(root, 'var/lib/docker/containers', hexId(1), `${hexId(1)}-json.log.1`), Buffer.alloc(999));
    await collector.update();
    let s = parseMetrics(await registry.metrics());
    expect(s.filter((x) => x.name === 'docker_container_log_size_bytes').map((x) => [x.labels.name, x.value])).toEqual([['c1', 1234], ['c2', 77]]);
    expect(value(s, 'docker_exporter_log_size_failures_total', { reason: 'missing' })).toBe(1);
    expect(value(s, 'docker_exporter_log_size_failures_total', { reason: 'denied' })).toBe(0);

    // The file vanishes: its series goes, the failure is counted again.
    fs.rmSync(path.join(root, 'var/lib/docker/containers', hexId(2)), { recursive: true });
    await collector.update();
    s = parseMetrics(await registry.metrics());
    expect(s.filter((x) => x.name === 'docker_container_log_size_bytes').map((x) => x.labels.name)).toEqual(['c1']);
    expect(value(s, 'docker_exporter_log_size_failures_total', { reason: 'missing' })).toBe(3);
  });

  it('names why a file could not be read', () => {
    const err = (code: string) => Object.assign(new Error(code), { code });
    expect(['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'EIO'].map((c) => failureOf(err(c)))).toEqual(['missing', 'missing', 'denied', 'denied', 'error']);
  });
});
