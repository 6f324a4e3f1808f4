import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // FUSE integration suites mount real filesystems; running files in parallel on 2 cores
    // makes timings noisy but is safe because every suite uses its own mount point and port.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
