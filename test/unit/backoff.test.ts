import { describe, expect, it } from 'vitest';
import { Backoff, sleep } from '../../src/backoff.js';

describe('Backoff', () => {
  /** A backoff on a clock the test moves; `delays` samples next() at the given times (ms). */
  function run(times: number[], b = (now: () => number) => new Backoff(250, 10_000, 1_000, 60_000, now)): number[] {
    let t = 0;
    const backoff = b(() => t);
    return times.map((at) => {
      t = at;
      return backoff.next();
    });
  }

  it('starts fast and stays at most a second apart for the first minute of an outage', () => {
    for (let trial = 0; trial < 50; trial++) {
      const delays = run([0, 1, 2, 3, 4, 5, 10_000, 30_000, 59_999]);
      expect(delays[0]).toBeGreaterThanOrEqual(125);
      expect(delays[0]).toBeLessThanOrEqual(250);
      expect(delays[1]).toBeLessThanOrEqual(500);
      for (const d of delays.slice(2)) {
        expect(d).toBeGreaterThanOrEqual(500);
        expect(d).toBeLessThanOrEqual(1_000);
      }
    }
  });

  it('backs off up to the maximum for an engine that stays down', () => {
    for (let trial = 0; trial < 50; trial++) {
      const delays = run([0, 1, 2, 3, 4, 5, 6, 60_000, 70_000, 80_000]);
      expect(delays[7]).toBeGreaterThanOrEqual(5_000);
      for (const d of delays.slice(7)) expect(d).toBeLessThanOrEqual(10_000);
    }
  });

  it('starts over after reset, and an explicit base above a second is kept', () => {
    let t = 0;
    const b = new Backoff(250, 10_000, 1_000, 60_000, () => t);
    for (let i = 0; i < 10; i++) b.next();
    t = 100_000;
    expect(b.next()).toBeGreaterThanOrEqual(5_000);
    b.reset();
    expect(b.next()).toBeLessThanOrEqual(250);
    const slow = new Backoff(60_000, 60_000);
    expect(slow.next()).toBeGreaterThanOrEqual(30_000);
  });

  it('sleep ends early on abort', async () => {
    const ctl = new AbortController();
    const started = performance.now();
    setTimeout(() => ctl.abort(), 20);
    await sleep(10_000, ctl.signal);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
