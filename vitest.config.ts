import { defineConfig } from 'vitest/config';

// Three projects: unit tests need nothing but Node and run in parallel; tools tests run the programs
// that check what we ship (promtool, systemd-analyze), found or installed by test/helpers/tools.ts;
// integration tests share one real Docker Engine (and some restart or reconfigure it), so they run
// one file at a time.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'tools',
          include: ['test/tools/**/*.test.ts'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/helpers/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
