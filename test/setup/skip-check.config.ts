// vitest config for test/setup/skip-summary.test.ts: the project's reporters without the global setup's build
// (the child run only needs the test files' own imports).

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/e2e/perplexity.test.ts'],
    pool: 'forks',
    reporters: ['default', './test/setup/skip-summary.ts'],
  },
});
