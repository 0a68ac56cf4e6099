import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, TEST_IMAGE, TEST_LABEL, TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { findAll, value, type Sample } from '../helpers/prom.js';

// Issue 18 items 2, 3 and 5 against the real engine: an image reference re-tagged under a running
// container, log file sizes against the files themselves, restart policy and published ports.
// Only this file's containers are exported (--container.include), and only what it created is
// removed: its containers, its tag and the image it committed.

const MARK = `capit${process.pid}`;
/** The reference the test moves: its own repository, so no colleague's container uses it. */
const REF = `${MARK}/app:1`;
const QUIET = ['--no-collector.stats', '--no-collector.events', '--no-collector.df', '--container.include', `^${MARK}-`];

const tc = new TestContainers();
let exp: RunningExporter;
let committed: string | undefined;
let tagged = false;

const byName = (samples: Sample[], metric: string, name: string): number | undefined => value(samples, metric, { name: `${MARK}-${name}` });
const inspect = async (id: string): Promise<Record<string, any>> => JSON.parse(await docker(['inspect', id]))[0];
/** `docker run -d` of `image` (TestContainers runs the test image only), removed with the others. */
const runImage = async (name: string, image: string): Promise<string> =>
  tc.track(await docker(['run', '-d', '--label', TEST_LABEL, '--name', `${MARK}-${name}`, image, 'sleep', '3600']));

beforeAll(async () => {
  await docker(['tag', TEST_IMAGE, REF]);
  tagged = true;
  exp = await startExporter(['--collector.logs', ...QUIET]);
}, 60_000);

afterAll(async () => {
  await exp?.stop();
  await tc.removeAll();
  if (tagged) await docker(['rmi', REF]).catch(() => undefined);
  if (committed) await docker(['rmi', committed]).catch(() => undefined);
}, 60_000);

describe('docker_container_image_outdated', () => {
  it('is 0 while the reference names the running image, 1 once it is re-tagged to another, 0 again for a container created anew', async () => {
    const original = (await inspect(TEST_IMAGE)).Id as string;
    const old = await runImage('old', REF);
    // Pinned to the image id (short, as `docker run 333f86d5d92a` takes it): never outdated.
    await runImage('byid', original.slice(7, 19));
    await waitFor('old and byid at 0', async () => {
      const s = await exp.samples();
      return byName(s, 'docker_container_image_outdated', 'old') === 0 && byName(s, 'docker_container_image_outdated', 'byid') === 0;
    });
    // A second image, made locally (no registry): the old container's filesystem, committed.
    committed = await docker(['commit', '--change', `LABEL ${MARK}=2`, old]);
    expect(committed).not.toBe(original);
    await docker(['tag', committed, REF]);
    await waitFor('old at 1', async () => byName(await exp.samples(), 'docker_container_image_outdated', 'old') === 1);
    let s = await exp.samples();
    expect(byName(s, 'docker_container_image_outdated', 'byid')).toBe(0);
    // Recreated from the same reference, a container runs the new image.
    const fresh = await runImage('new', REF);
    expect((await inspect(fresh)).Image).toBe(committed);
    await waitFor('new at 0', async () => byName(await exp.samples(), 'docker_container_image_outdated', 'new') === 0);
    s = await exp.samples();
    expect(byName(s, 'docker_container_image_outdated', 'old')).toBe(1);
    // Moved back: the old container is current again and the new one outdated.
    await docker(['tag', original, REF]);
    await waitFor('moved back', async () => {
      const now = await exp.samples();
      return byName(now, 'docker_container_image_outdated', 'old') === 0 && byName(now, 'docker_container_image_outdated', 'new') === 1;
    });
    // Image ids come from inspecting the reference, never from listing every image.
    s = await exp.samples();
    expect(value(s, 'docker_exporter_docker_requests_total', { endpoint: '/images/json' })).toBeUndefined();
    const inspects = value(s, 'docker_exporter_docker_requests_total', { endpoint: '/images/{name}/json' })!;
    expect(inspects).toBeGreaterThanOrEqual(3);
    console.log(`image inspects for the whole test: ${inspects}`);
  }, 90_000);
});

describe('docker_container_log_size_bytes', () => {
  it('equals the size of each json-file and local log file; a container without a log file has none', async () => {
    const print = ['sh', '-c', 'for i in $(seq 1 500); do echo "line $i of a known log"; done; sleep 3600'];
    const json = await tc.run(['--name', `${MARK}-json`, '--log-driver', 'json-file'], print);
    const local = await tc.run(['--name', `${MARK}-local`, '--log-driver', 'local'], print);
    await tc.run(['--name', `${MARK}-nolog`, '--log-driver', 'none'], print);
    const jsonFile = (await inspect(json)).LogPath as string;
    const localFile = path.join(path.dirname(jsonFile), '..', local, 'local-logs', 'container.log');
    // Every line written: json-file holds one JSON record per line.
    await waitFor('500 lines in the json-file log', () => fs.readFileSync(jsonFile, 'utf8').split('\n').length === 501);
    await waitFor('the local log settled', async () => {
      const a = fs.statSync(localFile).size;
      await new Promise((r) => setTimeout(r, 300));
      return a > 0 && a === fs.statSync(localFile).size;
    });
    await waitFor('both sizes exported', async () => {
      const s = await exp.samples();
      return byName(s, 'docker_container_log_size_bytes', 'json') === fs.statSync(jsonFile).size && byName(s, 'docker_container_log_size_bytes', 'local') === fs.statSync(localFile).size;
    });
    const s = await exp.samples();
    const jsonSize = fs.statSync(jsonFile).size;
    expect(byName(s, 'docker_container_log_size_bytes', 'json')).toBe(jsonSize);
    expect(byName(s, 'docker_container_log_size_bytes', 'local')).toBe(fs.statSync(localFile).size);
    expect(byName(s, 'docker_container_log_size_bytes', 'nolog')).toBeUndefined();
    expect(findAll(s, 'docker_container_state', { name: `${MARK}-nolog`, state: 'running' })[0]?.value).toBe(1);
    expect(value(s, 'docker_exporter_collector_success', { collector: 'logs' })).toBe(1);
    console.log(`json-file log of 500 lines: ${jsonSize} bytes; local: ${fs.statSync(localFile).size} bytes`);
  }, 60_000);

  it('counts each file it cannot find (nothing mounted under --path.rootfs) and fails no collector', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'capit-root-'));
    const other = await startExporter(['--collector.logs', '--path.rootfs', root, ...QUIET]);
    try {
      await tc.run(['--name', `${MARK}-unmounted`], ['sleep', '3600']);
      const s = await waitFor('a failed measurement', async () => {
        const now = await other.samples();
        return (value(now, 'docker_exporter_log_size_failures_total', { reason: 'missing' }) ?? 0) > 0 && now;
      });
      expect(findAll(s, 'docker_container_log_size_bytes')).toEqual([]);
      expect(value(s, 'docker_exporter_collector_success', { collector: 'logs' })).toBe(1);
      expect(value(s, 'docker_exporter_collector_success', { collector: 'containers' })).toBe(1);
      expect(other.logs.some((l) => l.includes('container log file could not be measured') && l.includes('mount the engine'))).toBe(true);
    } finally {
      await other.stop();
      fs.rmSync(root, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('docker_container_info restart_policy and ports', () => {
  it('shows the policy and the published ports exactly', async () => {
    await tc.run(['--name', `${MARK}-web`, '--restart', 'unless-stopped', '-p', '127.0.0.1:18080:80'], ['sleep', '3600']);
    await tc.run(['--name', `${MARK}-job`], ['sleep', '3600']);
    const info = await waitFor('both containers', async () => {
      const s = await exp.samples();
      const web = findAll(s, 'docker_container_info', { name: `${MARK}-web` })[0];
      const job = findAll(s, 'docker_container_info', { name: `${MARK}-job` })[0];
      return web && job && { web, job };
    });
    expect([info.web.labels.restart_policy, info.web.labels.ports]).toEqual(['unless-stopped', '127.0.0.1:18080->80/tcp']);
    expect([info.job.labels.restart_policy, info.job.labels.ports]).toEqual(['no', '']);
  }, 60_000);
});
