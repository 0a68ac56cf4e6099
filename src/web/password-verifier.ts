import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';

/**
 * The worker's whole program. Plain JavaScript evaluated as a script rather than a file beside this
 * module: the same code then runs from dist/ and from src/ under vitest or tsx (a .ts worker file
 * needs a TypeScript loader, which Node 20 does not hand on to workers). bcryptjs is required here
 * only, so the main thread never loads it. compareSync: the worker does one check at a time anyway,
 * and bcryptjs compares the final hashes in constant time.
 */
const PROGRAM = `'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcryptjs);
parentPort.on('message', (m) => {
  let reply;
  try {
    reply = { id: m.id, match: bcrypt.compareSync(m.password, m.hash) };
  } catch (err) {
    reply = { id: m.id, error: String((err && err.message) || err) };
  }
  parentPort.postMessage(reply);
});
`;

/**
 * Checks waiting for or in the worker at once, by default. At cost 10 one check takes ~60-100 ms,
 * so a full queue is 1-2 s of waiting: enough for every scraper's first check, and a flood gets
 * 429 at once instead of a queue that grows for as long as it lasts.
 */
export const DEFAULT_MAX_PENDING = 16;

export interface VerifierOptions {
  /** Checks waiting or running at once; more are refused rather than queued. */
  maxPending?: number;
  /** A worker idle this long is stopped and its memory returned; the next check starts another. */
  idleMs?: number;
  /** After a worker died, checks fail (closed) for this long before another is started: no restart loop. */
  restartDelayMs?: number;
  /** The worker's program, for tests of a failing worker. */
  program?: string;
  /**
   * A worker with checks waiting that answers none for this long is taken as dead (a hung thread
   * would otherwise hold the queue full, and every new password would get 429 until a restart).
   */
  stallMs?: number;
}

/** Far past one compare at any cost a web config may hold in practice (cost 14: ~1.5 s). */
const DEFAULT_STALL_MS = 30_000;

interface Pending {
  resolve: (match: boolean) => void;
  reject: (err: Error) => void;
}

interface Reply {
  id: number;
  match?: boolean;
  error?: string;
}

/**
 * bcrypt compares off the main thread, in one lazily started worker, with a bounded queue: a flood
 * of passwords costs one core at most and never stalls scrapes, rendering or the engine's streams.
 * A worker that dies fails its checks (never lets them pass) and is replaced on a later check.
 */
export class PasswordVerifier {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private diedAt = -Infinity;
  private idleTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  /** Why a worker failed, for the log line of its exit. */
  private readonly failures = new WeakMap<Worker, string>();
  private closed = false;
  private readonly stallMs: number;
  private readonly maxPending: number;
  private readonly idleMs: number;
  private readonly restartDelayMs: number;
  private readonly program: string;

  constructor(
    private readonly logger: Logger,
    opts: VerifierOptions = {},
  ) {
    this.maxPending = opts.maxPending ?? DEFAULT_MAX_PENDING;
    this.idleMs = opts.idleMs ?? 60_000;
    this.restartDelayMs = opts.restartDelayMs ?? 1000;
    this.program = opts.program ?? PROGRAM;
    this.stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
  }

  /** Checks waiting for or in the worker now. */
  get queued(): number {
    return this.pending.size;
  }

  /** Whether a worker thread is running now. */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /**
   * Whether `password` matches the bcrypt `hash`, or 'busy' at once when the queue is full.
   * Rejects when the worker fails, is being restarted, or the verifier is closed.
   */
  verify(password: string, hash: string): Promise<boolean | 'busy'> {
    if (this.pending.size >= this.maxPending) return Promise.resolve('busy');
    let worker: Worker;
    try {
      worker = this.start();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    clearTimeout(this.idleTimer);
    const id = this.nextId++;
    return new Promise<boolean>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, password, hash });
      if (this.pending.size === 1) this.watch(worker);
    });
  }

  /** Stops the worker; checks still waiting fail. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.stallTimer);
    const worker = this.worker;
    this.worker = undefined;
    this.failPending(new Error('password verifier closed'));
    await worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    if (this.closed) throw new Error('password verifier closed');
    const since = performance.now() - this.diedAt;
    if (since < this.restartDelayMs) throw new Error(`bcrypt worker died ${Math.round(since)} ms ago; restarting it shortly`);
    let worker: Worker;
    try {
      worker = new Worker(this.program, {
        eval: true,
        workerData: { bcryptjs: createRequire(import.meta.url).resolve('bcryptjs') },
      });
    } catch (err) {
      // As a death: logged, and not tried again on every request.
      this.diedAt = performance.now();
      this.logger.error({ err: (err as Error).message }, 'cannot start the bcrypt worker; password checks fail closed until it starts');
      throw err;
    }
    // Never what keeps the process alive: it only ever answers requests.
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if (reply.error !== undefined) {
        // Hashes are validated when the file is read, so this is a bug, not a wrong password.
        this.logger.error({ err: reply.error }, 'bcrypt compare failed');
        waiting.reject(new Error(`bcrypt compare failed: ${reply.error}`));
      } else {
        waiting.resolve(reply.match === true);
      }
      // An answer is progress: the stall clock starts again for the checks still waiting.
      if (this.pending.size > 0) this.watch(worker);
      else {
        clearTimeout(this.stallTimer);
        this.idleTimer = setTimeout(() => this.stopIdle(worker), this.idleMs).unref();
      }
    });
    worker.on('error', (err) => void this.failures.set(worker, err.message));
    worker.on('exit', (code) => {
      // Stopped on purpose (idle, closed) or already replaced: nothing failed.
      if (this.worker !== worker) return;
      const failure = this.failures.get(worker);
      this.worker = undefined;
      this.diedAt = performance.now();
      this.logger.error({ err: failure ?? `exited with code ${code}`, failedChecks: this.pending.size }, 'bcrypt worker died; its checks fail closed and a new worker starts on a later check');
      this.failPending(new Error(`bcrypt worker died: ${failure ?? `exit code ${code}`}`));
    });
    this.worker = worker;
    return worker;
  }

  /** Takes `worker` as dead if it answers none of the waiting checks within stallMs from now. */
  private watch(worker: Worker): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => {
      if (this.worker !== worker || this.pending.size === 0) return;
      this.failures.set(worker, `no answer for ${this.stallMs} ms with ${this.pending.size} checks waiting`);
      // Its 'exit' then fails the waiting checks and lets a later check start another worker.
      void worker.terminate();
    }, this.stallMs).unref();
  }

  private stopIdle(worker: Worker): void {
    if (this.worker !== worker || this.pending.size > 0) return;
    this.worker = undefined;
    void worker.terminate();
  }

  private failPending(err: Error): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const w of waiting) w.reject(err);
  }
}
