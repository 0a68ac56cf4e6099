/**
 * Records the real engine's payloads that the fake engine serves, into bench/fixtures/:
 * `node --import tsx bench/record-fixtures.ts`. Starts four labelled containers (idle; busy on a
 * user network; limited + health-checked + writing to a volume; exited), records list entries,
 * inspects, stats (stream frames, stream=false, one-shot), a lifecycle's events, /info, /version,
 * /_ping and /system/df, and removes what it started.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BENCH_IMAGE, docker, ENGINE_SOCKET, REPO_ROOT, sleep, socketGet, socketLines, TEST_LABEL } from './lib.js';

const OUT = path.join(REPO_ROOT, 'bench/fixtures');
const BENCH_LABEL = 'docker-exporter-bench=record';
const NET = 'bench-record-net';
const VOLUME = 'bench-record-vol';

const TEMPLATES = {
  idle: ['--label', 'com.docker.compose.project=shop', '--label', 'com.docker.compose.service=cart', BENCH_IMAGE, 'sh', '-c', 'echo state > /marker; exec sleep 3600'],
  busy: ['--network', NET, BENCH_IMAGE, 'sh', '-c', 'while true; do sleep 0.5; echo x >/dev/null; done'],
  limited: [
    '--memory', '64m', '--memory-reservation', '32m', '--cpus', '0.5', '--pids-limit', '100', '--cpu-shares', '512',
    '--health-cmd', 'true', '--health-interval', '2s', '-v', `${VOLUME}:/data`,
    BENCH_IMAGE, 'sh', '-c', 'while true; do dd if=/dev/zero of=/data/f bs=64k count=16 conv=fsync 2>/dev/null; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1; done',
  ],
  exited: [BENCH_IMAGE, 'sh', '-c', 'exit 3'],
} as const;

type Kind = keyof typeof TEMPLATES;

async function getJson(p: string): Promise<unknown> {
  const res = await socketGet(ENGINE_SOCKET, p);
  if (res.status !== 200) throw new Error(`GET ${p}: HTTP ${res.status}: ${res.body}`);
  return JSON.parse(res.body);
}

function write(name: string, value: unknown): void {
  fs.writeFileSync(path.join(OUT, name), typeof value === 'string' ? value : JSON.stringify(value, null, 2) + '\n');
}

async function main(): Promise<void> {
  fs.mkdirSync(OUT, { recursive: true });
  const ids: Partial<Record<Kind, string>> = {};
  const cleanup = async (): Promise<void> => {
    const all = Object.values(ids);
    if (all.length) await docker(['rm', '-f', '-v', ...all]).catch(() => undefined);
    await docker(['network', 'rm', NET]).catch(() => undefined);
    await docker(['volume', 'rm', '-f', VOLUME]).catch(() => undefined);
  };
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    await docker(['network', 'create', '--label', TEST_LABEL, '--label', BENCH_LABEL, NET]);
    await docker(['volume', 'create', '--label', TEST_LABEL, '--label', BENCH_LABEL, VOLUME]);
    for (const [kind, args] of Object.entries(TEMPLATES) as Array<[Kind, readonly string[]]>) {
      ids[kind] = await docker(['run', '-d', '--name', `bench-record-${kind}`, '--label', TEST_LABEL, '--label', BENCH_LABEL, ...args]);
    }
    // A second interface on the busy one, as a container on two networks has.
    await docker(['network', 'connect', 'bridge', ids.busy!]);
    // Let health checks pass, counters move and the disk writer write.
    await sleep(8000);

    const ping = await socketGet(ENGINE_SOCKET, '/_ping');
    write('ping.json', { status: ping.status, headers: pick(ping.headers, ['api-version', 'builder-version', 'cache-control', 'docker-experimental', 'ostype', 'pragma', 'server', 'content-type']), body: ping.body });
    const version = (await getJson('/version')) as { ApiVersion: string };
    write('version.json', version);
    const v = `/v${version.ApiVersion}`;
    write('info.json', await getJson(`${v}/info`));

    const listed = (await getJson(`${v}/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ label: [BENCH_LABEL] }))}`)) as Array<{ Id: string }>;
    const containers: Record<string, unknown> = {};
    for (const [kind, id] of Object.entries(ids) as Array<[Kind, string]>) {
      const entry = listed.find((c) => c.Id === id);
      if (!entry) throw new Error(`${kind} (${id}) missing from the container list`);
      const inspect = await getJson(`${v}/containers/${id}/json`);
      const stats: Record<string, unknown> = {};
      stats.oneShot = await getJson(`${v}/containers/${id}/stats?stream=false&one-shot=true`);
      stats.noStream = await getJson(`${v}/containers/${id}/stats?stream=false`);
      if (kind !== 'exited') {
        const frames = await socketLines(ENGINE_SOCKET, `${v}/containers/${id}/stats?stream=true`, 3, 5000);
        stats.stream = frames.lines.map((l) => JSON.parse(l) as unknown);
        stats.streamHeaders = pick(frames.headers, ['content-type', 'transfer-encoding']);
      }
      containers[kind] = { list: entry, inspect, stats };
    }
    write('containers.json', containers);

    // One container's lifecycle as the events stream reports it.
    const since = (Date.now() / 1000).toFixed(3);
    const probe = await docker(['run', '-d', '--name', 'bench-record-probe', '--label', TEST_LABEL, '--label', BENCH_LABEL, '--health-cmd', 'true', '--health-interval', '1s', BENCH_IMAGE, 'sleep', '3600']);
    await sleep(2500);
    await docker(['rm', '-f', probe]);
    await sleep(300);
    const until = (Date.now() / 1000).toFixed(3);
    const events = await socketLines(ENGINE_SOCKET, `${v}/events?since=${since}&until=${until}&filters=${encodeURIComponent(JSON.stringify({ container: [probe] }))}`, 1000, 5000);
    write('events.ndjson', events.lines.join('\n') + '\n');
    write('events-headers.json', pick(events.headers, ['content-type', 'transfer-encoding']));

    // Only this run's containers and volume: the engine is shared, and other rows say nothing more.
    const df = (await getJson(`${v}/system/df`)) as { Containers?: Array<{ Id: string }>; Volumes?: Array<{ Name: string }> };
    df.Containers = (df.Containers ?? []).filter((c) => Object.values(ids).includes(c.Id));
    df.Volumes = (df.Volumes ?? []).filter((vol) => vol.Name === VOLUME);
    write('system-df.json', df);
    process.stdout.write(`recorded ${Object.keys(containers).length} containers, ${events.lines.length} events into ${path.relative(REPO_ROOT, OUT)}/\n`);
  } finally {
    await cleanup();
  }
}

function pick(headers: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => headers[k] !== undefined).map((k) => [k, headers[k]]));
}

await main();
