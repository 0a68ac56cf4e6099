import fs from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * What a sick or hostile engine (or whatever stands between it and us) does to one reply:
 * - `hang`: accepts the request and never answers (a wedged daemon, a stalled proxy);
 * - `truncate`: announces a Content-Length, sends part of the body, closes (an engine crash, a
 *   proxy's idle timeout mid-reply);
 * - `truncate-chunked`: the same with a chunked body, closed between chunks;
 * - `endless`: answers 200 and dribbles a byte every 20 ms, forever (a stuck proxy buffer);
 * - `huge`: a chunked body that goes on in 64 KiB pieces up to `bytes` (a runaway reply);
 * - `huge-announced`: announces a Content-Length of `bytes` and sends a little of it;
 * - `garbage`: 200 with a body that is not JSON (a proxy's HTML error page, a broken engine);
 * - `reply`: 200 with the given JSON value (a wrong shape).
 */
export type Fault =
  | { kind: 'hang' }
  | { kind: 'truncate' }
  | { kind: 'truncate-chunked' }
  | { kind: 'endless' }
  | { kind: 'huge'; bytes: number }
  | { kind: 'huge-announced'; bytes: number }
  | { kind: 'garbage'; body?: string }
  | { kind: 'reply'; value: unknown };

export interface HostileEngine {
  socketPath: string;
  /** Faults by path (without the /v1.xx prefix): a string matches the whole path, a RegExp tests it. */
  faults: Map<string | RegExp, Fault>;
  /** Requests seen, by path without the version prefix. */
  requests: string[];
  /** Connections that carried a faulted request and are still open (a request given up must not leave one). */
  openFaulted(): number;
  close(): Promise<void>;
}

/** What a healthy engine of API 1.41 answers, small but complete enough for every collector. */
export const HEALTHY: Record<string, unknown> = {
  '/version': { ApiVersion: '1.41', Version: '20.10.24', MinAPIVersion: '1.12', Os: 'linux', Arch: 'amd64' },
  '/info': {
    ServerVersion: '20.10.24', OperatingSystem: 'Debian GNU/Linux 12', OSType: 'linux', Architecture: 'x86_64',
    KernelVersion: '6.1.0', Driver: 'overlay2', LoggingDriver: 'json-file', CgroupDriver: 'cgroupfs', CgroupVersion: '1',
    NCPU: 2, MemTotal: 25_000_000_000, Images: 1, Containers: 0, ContainersRunning: 0, ContainersPaused: 0, ContainersStopped: 0,
  },
  '/containers/json': [],
  '/system/df': { LayersSize: 0, Images: [], Containers: [], Volumes: [], BuildCache: [] },
};

/** Starts an engine on a unix socket that answers HEALTHY, except where `faults` says otherwise. */
export async function startHostileEngine(): Promise<HostileEngine> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostile-engine-'));
  const socketPath = path.join(dir, 'docker.sock');
  const faults = new Map<string | RegExp, Fault>();
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const faulted = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const faultFor = (p: string): Fault | undefined => {
    for (const [match, fault] of faults) if (typeof match === 'string' ? match === p : match.test(p)) return fault;
    return undefined;
  };

  const server = http.createServer((req, res) => {
    const p = (req.url ?? '/').replace(/^\/v\d+\.\d+/, '').replace(/\?.*$/, '');
    requests.push(p);
    const fault = faultFor(p);
    if (fault) faulted.add(req.socket);
    const json = { 'content-type': 'application/json' };
    switch (fault?.kind) {
      case 'hang':
        return;
      case 'truncate': {
        const body = JSON.stringify(HEALTHY[p] ?? { filler: 'x'.repeat(2000) });
        res.writeHead(200, { ...json, 'content-length': String(body.length) });
        res.write(body.slice(0, Math.floor(body.length / 2)), () => res.socket?.destroy());
        return;
      }
      case 'truncate-chunked':
        res.writeHead(200, json);
        res.write('[{"Id":"', () => res.socket?.destroy());
        return;
      case 'endless': {
        res.writeHead(200, json);
        const t = setInterval(() => res.write(' '), 20);
        timers.add(t);
        res.on('close', () => clearInterval(t));
        return;
      }
      case 'huge': {
        res.writeHead(200, json);
        const piece = Buffer.alloc(65536, 0x20);
        let sent = 0;
        const pump = (): void => {
          while (sent < fault.bytes && !res.destroyed) {
            sent += piece.length;
            if (!res.write(piece)) return void res.once('drain', pump);
          }
          if (!res.destroyed) res.end('{}');
        };
        res.write('[');
        pump();
        return;
      }
      case 'huge-announced':
        res.writeHead(200, { ...json, 'content-length': String(fault.bytes) });
        res.write('{"Id":"');
        return;
      case 'garbage':
        res.writeHead(200, json);
        res.end(fault.body ?? '<html><body>502 Bad Gateway</body></html>');
        return;
      case 'reply':
        res.writeHead(200, json);
        res.end(JSON.stringify(fault.value));
        return;
      default:
        break;
    }
    if (p === '/_ping') {
      res.writeHead(200, { 'content-type': 'text/plain', 'api-version': '1.41' });
      res.end('OK');
    } else if (p === '/events') {
      // An events stream that stays open and quiet.
      res.writeHead(200, json);
      res.flushHeaders();
    } else if (p in HEALTHY) {
      res.writeHead(200, json);
      res.end(JSON.stringify(HEALTHY[p]));
    } else {
      res.writeHead(404, json);
      res.end(JSON.stringify({ message: `no such route ${p}` }));
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => {
      sockets.delete(s);
      faulted.delete(s);
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    faults,
    requests,
    openFaulted: () => faulted.size,
    async close() {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
