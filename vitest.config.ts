import { defineConfig } from 'vitest/config';

// e2e tests (test/e2e) run real recipes on ../shared models; they share one cache and run in one fork
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 600_000,
    hookTimeout: 600_000,
    reporters: process.env.CI ? ['verbose'] : ['default'],
  },
});
