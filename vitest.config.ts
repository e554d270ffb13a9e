import { defineConfig } from 'vitest/config';

// e2e tests (test/e2e) run real recipes on ../shared models; they share one cache and run in one fork
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // file handles left to the garbage collector fail the test file (and, through the environment, the CLI)
    setupFiles: ['test/setup/file-handles.ts'],
    pool: 'forks',
    testTimeout: 600_000,
    hookTimeout: 600_000,
    // the last line of a run says how many tests were skipped and why (a run without ../shared skips the e2e tests)
    reporters: [process.env.CI ? 'verbose' : 'default', './test/setup/skip-summary.ts'],
  },
});
