import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Finds (or starts) the Redis the Redis tests need, or says in one line what is missing.
    globalSetup: ['test/helpers/redis-setup.ts'],
    // Two cores: keep process-heavy files from starving each other's timers.
    maxWorkers: 2,
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-results.json' }]] : ['default'],
  },
});
