import { describe, expect, it } from 'vitest';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir } from 'tmp-promise';
import { orphanedFolders, ownFolder, processAlive } from '../../src/content/process-dirs.js';

describe('per-process working folders', () => {
  it("hands over only the folders of processes that are gone (and this process's own)", async () => {
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      expect(processAlive(1)).toBe(true);
      const dead = 2 ** 22 + 12345; // above pid_max's default: never a live process
      expect(processAlive(dead)).toBe(false);
      for (const name of ['1', String(dead), 'junk']) await mkdir(join(tmp.path, name));
      const own = await ownFolder(tmp.path);
      const orphans = (await orphanedFolders(tmp.path)).sort();
      expect(orphans).toEqual([own, join(tmp.path, String(dead)), join(tmp.path, 'junk')].sort());
    } finally {
      await tmp.cleanup();
    }
  });
});
