/**
 * What one engine request costs a Node.js client that does nothing else: the floor under the
 * exporter's own CPU in poll mode. Against the running containers of the engine at DOCKER_HOST (or
 * /var/run/docker.sock), it measures the process's CPU per request for
 *   - one-shot stats requests, one per container per interval, 32 at a time (the exporter's poll);
 *   - inspect requests back to back (the same client kept busy: warm caches).
 * Run: node --max-semi-space-size=2 --import tsx bench/http-floor.ts [--interval 15s] [--rounds 4]
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import pLimit from 'p-limit';
import { parseDuration } from '../src/duration.js';
import { ENGINE_SOCKET, sleep, socketGet } from './lib.js';

// strict: an unknown flag or a missing value is an error, not silently ignored.
const { values } = parseArgs({ options: { interval: { type: 'string', default: '15s' }, rounds: { type: 'string', default: '4' } }, strict: true });
const intervalMs = parseDuration(values.interval);
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds: expected a whole number >= 1, got "${values.rounds}"`);
const agent = new http.Agent({ keepAlive: true, timeout: intervalMs * 2 });

const getJson = async (path: string): Promise<unknown> => JSON.parse((await socketGet(ENGINE_SOCKET, path, 30_000, agent)).body);

/** Runs `each` over `ids`, `concurrency` at a time. */
function round(ids: string[], concurrency: number, each: (id: string) => Promise<unknown>): Promise<unknown> {
  const limit = pLimit(concurrency);
  return Promise.all(ids.map((id) => limit(() => each(id))));
}

/** CPU milliseconds of this process per request over `fn`, which makes `requests` requests. */
async function cpuPerRequest(requests: number, fn: () => Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000 / requests;
}

const ids = ((await getJson('/containers/json')) as Array<{ Id: string }>).map((c) => c.Id);
if (ids.length === 0) throw new Error(`no running containers on ${ENGINE_SOCKET}: start some first`);
const stats = (id: string): Promise<unknown> => getJson(`/containers/${id}/stats?stream=false&one-shot=true`);
const inspect = (id: string): Promise<unknown> => getJson(`/containers/${id}/json`);
await round(ids, 32, stats);
await round(ids, 1, inspect);

const spaced = await cpuPerRequest(ids.length * rounds, async () => {
  for (let r = 0; r < rounds; r++) {
    const started = Date.now();
    await round(ids, 32, stats);
    await sleep(Math.max(0, intervalMs - (Date.now() - started)));
  }
});
const busy = await cpuPerRequest(ids.length * rounds, async () => {
  for (let r = 0; r < rounds; r++) await round(ids, 1, inspect);
});
const pct = (spaced * ids.length) / intervalMs * 100;
console.log(`${ids.length} running containers, ${rounds} rounds`);
console.log(`one-shot stats, one per container every ${intervalMs / 1000} s: ${spaced.toFixed(2)} ms CPU per request = ${pct.toFixed(2)} % of a core`);
console.log(`inspect, back to back:                         ${busy.toFixed(2)} ms CPU per request`);
process.exit(0);
