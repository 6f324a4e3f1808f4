import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DiskCache } from '../../src/content/disk-cache.js';
import { WriteBehind } from '../../src/content/write-behind.js';

describe('WriteBehind', () => {
  let tmp: DirectoryResult;
  let cache: DiskCache;
  beforeEach(async () => {
    tmp = await tmpDir({ unsafeCleanup: true });
    cache = new DiskCache({ dir: join(tmp.path, 'cache'), maxBytes: 1 << 20 });
    await cache.init();
  });
  afterEach(async () => tmp.cleanup());
  const objects = async (): Promise<string[]> => readdir(join(tmp.path, 'cache', 'objects'));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /**
   * The writes are on the thread pool: on a loaded machine two of them took longer than a fixed
   * sleep. Waited for (well short of any idle time that would write them anyway) instead.
   */
  const written = (keys: string[]) => vi.waitFor(async () => {
    expect((await objects()).sort()).toEqual(keys);
    for (const k of keys) expect(cache.lookup(k)).not.toBeNull(); // committed, not only renamed
  }, { timeout: 5_000, interval: 10 });

  it('holds writes back while the mount is busy, serving them from memory, then writes them', async () => {
    const wb = new WriteBehind(cache, { idleMs: 250, maxPendingBytes: 1 << 20 });
    wb.touch();
    wb.add('k1', Buffer.from('one'));
    wb.add('k2', Buffer.from('two'));
    for (let i = 0; i < 4; i++) {
      await sleep(30);
      wb.touch(); // still reading
    }
    expect(await objects()).toEqual([]);
    expect(wb.get('k1')?.toString()).toBe('one');
    await written(['k1', 'k2']);
    expect(wb.get('k1')).toBeUndefined();
    expect((await readFile(cache.lookup('k2')!)).toString()).toBe('two');
  });

  it('never writes bytes dropped as an old version, whether still waiting or being written', async () => {
    const wb = new WriteBehind(cache, { idleMs: 20, maxPendingBytes: 1 << 20 });
    wb.touch();
    wb.add('old', Buffer.from('stale'));
    wb.drop('old'); // waiting
    expect(wb.get('old')).toBeUndefined();
    await wb.flush();
    expect(await objects()).toEqual([]);
    wb.add('kept', Buffer.from('new'));
    await wb.flush();
    wb.add('k2', Buffer.from('stale too'));
    const written = wb.flush();
    // Dropped while its write is under way.
    while ((wb as unknown as { writing: { key: string } | null }).writing?.key !== 'k2') await new Promise((r) => setImmediate(r));
    wb.drop('k2');
    await written;
    expect(await objects()).toEqual(['kept']);
    wb.add('k3', Buffer.alloc(8, 3));
    wb.drop('k3');
    expect(wb.roomFor()).toBeUndefined(); // its bytes no longer count
  });

  it('serves no dropped bytes while their write is under way, and takes a newer version then', async () => {
    const wb = new WriteBehind(cache, { idleMs: 20, maxPendingBytes: 1 << 20 });
    wb.add('k', Buffer.from('old'));
    const written = wb.flush();
    while ((wb as unknown as { writing: { key: string } | null }).writing?.key !== 'k') await new Promise((r) => setImmediate(r));
    wb.drop('k'); // an upload replaced the file while the old bytes were being written
    expect(wb.get('k')).toBeUndefined();
    wb.add('k', Buffer.from('new')); // the new version, fetched again at once
    expect(wb.get('k')?.toString()).toBe('new');
    await written;
    await wb.flush();
    expect((await readFile(cache.lookup('k')!)).toString()).toBe('new');
    expect(wb.roomFor()).toBeUndefined();
  });

  it('gives room (backpressure) once what waits is written down to its bound', async () => {
    const wb = new WriteBehind(cache, { idleMs: 60_000, maxPendingBytes: 10 });
    wb.touch();
    wb.add('a', Buffer.alloc(8, 1));
    expect(wb.roomFor()).toBeUndefined(); // within the bound: no waiting
    wb.add('b', Buffer.alloc(8, 2));
    const room = wb.roomFor();
    expect(room).toBeInstanceOf(Promise);
    await room;
    expect((await objects()).length).toBeGreaterThan(0);
  });

  it('writes at once past its memory bound, and everything on flush()', async () => {
    const wb = new WriteBehind(cache, { idleMs: 60_000, maxPendingBytes: 10 });
    wb.touch();
    wb.add('small', Buffer.from('abc'));
    await sleep(30);
    expect(await objects()).toEqual([]);
    wb.add('big', Buffer.alloc(20, 1)); // over the bound: no waiting for quiet
    await written(['big', 'small']); // long before the 60 s of quiet it would otherwise wait for
    wb.touch();
    wb.add('late', Buffer.from('z'));
    await wb.flush();
    expect((await objects()).sort()).toEqual(['big', 'late', 'small']);
  });
});
