import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { E2E_GOLDEN, VARIES } from '../helpers/golden.js';
import { requireTool } from '../helpers/tools.js';

/** promtool's lint of an exposition text on stdin: exit status and everything it said. */
function checkMetrics(promtool: string, text: string): { status: number | null; out: string } {
  const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

// As node_exporter runs `promtool check metrics` on its e2e output: every name, type, help text and
// label of the whole /metrics (test/unit/e2e-golden.test.ts keeps the file equal to it) is one
// Prometheus accepts without a lint warning.
describe('the end-to-end golden output (test/fixtures/e2e/metrics.golden.prom)', () => {
  const promtool = requireTool('promtool', 'prometheus');
  // promtool parses every value: the masked ones (not numbers) are given as 0. Masked label values
  // are strings like any other.
  const text = fs.readFileSync(E2E_GOLDEN, 'utf8').replaceAll(` ${VARIES}\n`, ' 0\n');

  it('passes promtool check metrics with nothing to say', () => {
    expect(text).toContain('docker_events_total{');
    const r = checkMetrics(promtool, text);
    expect(r.out).toBe('');
    expect(r.status).toBe(0);
  });

  it('and the check does catch a mistake: a counter without _total', () => {
    const r = checkMetrics(promtool, text.replaceAll('docker_events_total', 'docker_events'));
    expect(r.out).toContain('docker_events counter metrics should have "_total" suffix');
    expect(r.status).not.toBe(0);
  });
});
