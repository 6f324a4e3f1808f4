import { describe, expect, it } from 'vitest';
import { mkdir, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
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

  it("leaves a live mount's folders on another host sharing the cache alone; takes them once untouched for long", async () => {
    // An HPC home or scratch folder is shared by the nodes: a pid from another node says nothing
    // about a process here (its mount may be running, or it may hold the very same pid number).
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const dead = 2 ** 22 + 12345;
      const other = 'other-node-042';
      const live = join(tmp.path, `${other}-${dead}-0a1b2c3d`); // touched a moment ago
      const abandoned = join(tmp.path, `${other}-${dead + 1}-0a1b2c3d`);
      const sameHostDead = join(tmp.path, `${hostname().replace(/[^A-Za-z0-9._-]/g, '_')}-${dead}-0a1b2c3d`);
      const sameHostLive = join(tmp.path, `${hostname().replace(/[^A-Za-z0-9._-]/g, '_')}-1-0a1b2c3d`);
      for (const d of [live, abandoned, sameHostDead, sameHostLive]) await mkdir(d);
      const longAgo = new Date(Date.now() - 11 * 60_000);
      await utimes(abandoned, longAgo, longAgo);
      const own = await ownFolder(tmp.path);
      const orphans = (await orphanedFolders(tmp.path)).sort();
      expect(orphans).toEqual([own, abandoned, sameHostDead].sort());
      // two nodes, or two pid namespaces on one, may run mounts with the same pid
      expect(own).not.toBe(join(tmp.path, String(process.pid)));
    } finally {
      await tmp.cleanup();
    }
  });
});
