import { closeSync, openSync, readdirSync, statSync } from 'node:fs';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { openFds, registerOpenFds } from '../../src/open-fds.js';

describe('process_open_fds', () => {
  it('counts this process\'s open descriptors, as a listing of /proc/self/fd does', () => {
    const listed = (): number => readdirSync('/proc/self/fd').length - 1;
    const before = openFds('/proc/self/fd')!;
    expect(before).toBe(listed());
    const fds = Array.from({ length: 50 }, () => openSync('/dev/null', 'r'));
    try {
      expect(openFds('/proc/self/fd')).toBe(before + 50);
      expect(openFds('/proc/self/fd')).toBe(listed());
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  });

  it('lists the directory where its size says nothing (as /proc/<pid>/fd before Linux 6.2)', () => {
    // /proc/self/fdinfo has an entry per descriptor, like fd, but reports size 0 on every kernel.
    const fds = Array.from({ length: 20 }, () => openSync('/dev/null', 'r'));
    try {
      expect(statSync('/proc/self/fdinfo').size).toBe(0);
      expect(openFds('/proc/self/fdinfo')).toBe(readdirSync('/proc/self/fd').length - 1);
    } finally {
      for (const fd of fds) closeSync(fd);
    }
    expect(openFds('/proc/self/no-such-dir')).toBeUndefined();
  });

  it('replaces prom-client\'s gauge under the same name and help', async () => {
    const registry = new Registry();
    registerOpenFds(registry);
    const text = await registry.metrics();
    expect(text).toContain('# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n');
    expect(Number(/^process_open_fds (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(2);
  });
});
