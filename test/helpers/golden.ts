/**
 * How the end-to-end golden output (test/fixtures/e2e/metrics.golden.prom) is made comparable from
 * one run to the next. Everything the inputs can fix is fixed by the test (test/unit/e2e-golden.test.ts);
 * this file holds only what no input fixes, so that it is read in one place.
 */

/** The golden file, written by the e2e test with UPDATE_GOLDEN=1 and checked by promtool in the tools project. */
export const E2E_GOLDEN = new URL('../fixtures/e2e/metrics.golden.prom', import.meta.url);

/** Stands for a value (or label value) that differs from run to run, in the compared text only. */
export const VARIES = '<varies>';

/**
 * prom-client's default metrics describe this test process and its Node.js runtime: CPU time,
 * memory, open descriptors, event-loop lag, the start time (read from the real clock when
 * prom-client loads) and the machine's descriptor limit. Their names, help and labels are compared;
 * their values cannot be.
 */
const RUNTIME_VALUES = /^(process|nodejs)_/;

/**
 * Families whose very series the runtime decides: which libuv handle and request types are alive
 * at the instant of the scrape, which heap spaces this V8 has, which kinds of garbage collection
 * have run so far. Their samples are replaced by one comment line; their HELP and TYPE stay.
 */
const RUNTIME_SERIES = new Set([
  'nodejs_active_resources',
  'nodejs_active_handles',
  'nodejs_active_requests',
  'nodejs_heap_space_size_total_bytes',
  'nodejs_heap_space_size_used_bytes',
  'nodejs_heap_space_size_available_bytes',
  'nodejs_gc_duration_seconds',
]);
const RUNTIME_SERIES_LINE = `# ${VARIES}: the series of this family are the runtime's`;

/** How long each collector took: the exporter's own timing, never the same twice. */
const TIMED = new Set(['docker_exporter_collector_duration_seconds']);

/**
 * Label values that follow the build and the runtime rather than the exporter's behaviour: the
 * package version (a release changes it), the revision (of the checkout the build was made from,
 * "unknown" from source) and the Node.js version.
 */
const BUILD_LABELS: Record<string, readonly string[]> = {
  docker_exporter_build_info: ['version', 'revision', 'nodejs_version'],
  nodejs_version_info: ['version', 'major', 'minor', 'patch'],
};

/** A sample line with its value replaced (the exporter writes no timestamps: the value is the last field). */
function maskValue(line: string): string {
  return `${line.slice(0, line.lastIndexOf(' '))} ${VARIES}`;
}

function maskLabels(line: string, names: readonly string[]): string {
  let out = line;
  for (const name of names) out = out.replace(new RegExp(`([{,]${name}=)"(?:[^"\\\\]|\\\\.)*"`), `$1"${VARIES}"`);
  return out;
}

/**
 * The exposition text as the golden file holds it: the samples of each family sorted, and the
 * values above replaced by VARIES. The exporter writes a family's series in the order it first set
 * them: for containers the order their inspect answers came back (8 in flight at once), for the
 * request counters and collector results whichever request or collector came first. The format
 * gives that order no meaning. Families stay in the order the exporter writes them, with every
 * HELP and TYPE line as written.
 */
export function comparable(text: string): string {
  const blocks = text.split(/\n(?=# HELP )/);
  return blocks
    .map((block) => {
      const name = /^# HELP (\S+)/.exec(block)?.[1];
      const lines = block.split('\n');
      const comments = lines.filter((l) => l.startsWith('#'));
      let samples = lines.filter((l) => l !== '' && !l.startsWith('#'));
      // The blank line that ends a family (and the file's last newline) stays where it is.
      const blanks = lines.filter((l) => l === '');
      if (name !== undefined) {
        if (RUNTIME_SERIES.has(name)) samples = [RUNTIME_SERIES_LINE];
        else {
          const labels = BUILD_LABELS[name];
          if (labels) samples = samples.map((l) => maskLabels(l, labels));
          else if (RUNTIME_VALUES.test(name) || TIMED.has(name)) samples = samples.map(maskValue);
        }
      }
      return [...comments, ...samples.sort(), ...blanks].join('\n');
    })
    .join('\n');
}
