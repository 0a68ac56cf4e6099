import { describe, expect, it } from 'vitest';
import { BackgroundRefresh } from '../../src/helpers.js';

/** A load the test settles by hand, counting its calls. */
function manualLoad() {
  const calls: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const load = () => new Promise<void>((resolve, reject) => void calls.push({ resolve, reject }));
  return { calls, load };
}
const notYet = () => new Error('not yet');
const tick = () => new Promise((r) => setImmediate(r));

describe('BackgroundRefresh', () => {
  it('the first due() waits for the load, at most firstWaitMs', async () => {
    const { calls, load } = manualLoad();
    const r = new BackgroundRefresh(load, 30_000, 50, notYet);
    const started = performance.now();
    await expect(r.due()).rejects.toThrow('not yet');
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    // Still in flight: the next due() joins it instead of asking again.
    const second = r.due();
    expect(calls).toHaveLength(1);
    calls[0]!.resolve();
    await second;
    expect(r.error).toBeUndefined();
  });

  it('after a success, due() neither waits nor loads again until maxAgeMs has passed', async () => {
    const { calls, load } = manualLoad();
    const r = new BackgroundRefresh(load, 40, 1000, notYet);
    const first = r.due();
    calls[0]!.resolve();
    await first;
    await r.due();
    expect(calls).toHaveLength(1);
    await new Promise((res) => setTimeout(res, 60));
    // Due again: started in the background, and this due() does not wait for it.
    await r.due();
    expect(calls).toHaveLength(2);
    await r.due();
    expect(calls).toHaveLength(2);
    calls[1]!.resolve();
  });

  it('keeps the last failure until a load succeeds, and loads again on the next due()', async () => {
    const { calls, load } = manualLoad();
    const r = new BackgroundRefresh(load, 30_000, 1000, notYet);
    const first = r.due();
    calls[0]!.reject(new Error('GET /info: 500'));
    await first;
    expect(r.error?.message).toBe('GET /info: 500');
    const second = r.due();
    expect(calls).toHaveLength(2);
    calls[1]!.resolve();
    await second;
    expect(r.error).toBeUndefined();
  });

  it('expire() makes the next due() load and wait as the first did', async () => {
    const { calls, load } = manualLoad();
    const r = new BackgroundRefresh(load, 30_000, 1000, notYet);
    const first = r.due();
    calls[0]!.resolve();
    await first;
    r.expire();
    let settled = false;
    const again = r.due().then(() => void (settled = true));
    await tick();
    expect(calls).toHaveLength(2);
    expect(settled).toBe(false);
    calls[1]!.resolve();
    await again;
    expect(settled).toBe(true);
  });
});
