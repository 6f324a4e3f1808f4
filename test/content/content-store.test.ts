import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ContentStore } from '../../src/content/content-store.js';
import { DiskCache } from '../../src/content/disk-cache.js';
import type { FileRef, Owner } from '../../src/xnat/types.js';
import { MemoryXnat } from '../helpers/memory-client.js';
import { createHash } from 'node:crypto';

const owner: Owner = { level: 'experiment', project: 'P', experiment: 'E' };

function refFor(x: MemoryXnat, path: string, data: Buffer, digest = true): FileRef {
  x.addFile(owner, 'R', path, data);
  return { owner, resource: 'R', path, size: data.length, digest: digest ? createHash('md5').update(data).digest('hex') : '', uri: `/data/e/${path}` };
}

async function readAll(store: ContentStore, fd: number, size: number, chunk = 4096): Promise<Buffer> {
  const out = Buffer.alloc(size);
  let pos = 0;
  for (;;) {
    const buf = Buffer.alloc(chunk);
    const n = await store.read(fd, buf, chunk, pos);
    if (n === 0) break;
    buf.copy(out, pos, 0, n);
    pos += n;
  }
  expect(pos).toBe(size);
  return out;
}

describe('ContentStore', () => {
  let tmp: DirectoryResult;
  let cache: DiskCache;
  beforeEach(async () => {
    tmp = await tmpDir({ unsafeCleanup: true });
    cache = new DiskCache({ dir: join(tmp.path, 'cache'), maxBytes: 10 * 1024 * 1024 });
    await cache.init();
  });
  afterEach(async () => tmp.cleanup());

  const make = (x: MemoryXnat, prefetch = false) => new ContentStore(x, {
    server: x.baseUrl, cache,
    download: { maxAttempts: 4, retryDelayMs: 1 },
    prefetch: { enabled: prefetch, concurrency: 4, maxFileBytes: 1 << 20, maxFolderBytes: 1 << 24 },
  });

  it('streams a file and then serves it from the 0700 disk cache without a request', async () => {
    const x = new MemoryXnat();
    const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const ref = refFor(x, 'big.bin', data);
    const store = make(x);
    const fd = await store.open(ref);
    expect((await readAll(store, fd, data.length)).equals(data)).toBe(true);
    await store.release(fd);
    await store.idle();
    expect(x.calls.filter((c) => c.startsWith('get'))).toHaveLength(1);
    const fd2 = await store.open(ref);
    expect((await readAll(store, fd2, data.length, 65536)).equals(data)).toBe(true);
    await store.release(fd2);
    expect(x.calls.filter((c) => c.startsWith('get'))).toHaveLength(1);
    expect(store.stats.cacheHits).toBe(1);
    expect((await stat(join(tmp.path, 'cache'))).mode & 0o777).toBe(0o700);
  });

  it('restarts a dropped download without Range and still returns exact bytes', async () => {
    const x = new MemoryXnat();
    const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) % 256));
    const ref = refFor(x, 'f.bin', data);
    x.failReads = { count: 2, afterBytes: 30_000 };
    const store = make(x);
    const fd = await store.open(ref);
    expect((await readAll(store, fd, data.length)).equals(data)).toBe(true);
    expect(x.calls.filter((c) => c.startsWith('get'))).toHaveLength(3);
  });

  it('resumes with Range when the server honours it', async () => {
    const x = new MemoryXnat();
    x.rangeSupport = true;
    const data = Buffer.alloc(50_000, 3);
    const ref = refFor(x, 'g.bin', data);
    x.failReads = { count: 1, afterBytes: 20_000 };
    const store = make(x);
    const fd = await store.open(ref);
    expect((await readAll(store, fd, data.length)).equals(data)).toBe(true);
  });

  it('fails with an error (never short data) when every attempt drops', async () => {
    const x = new MemoryXnat();
    const ref = refFor(x, 'h.bin', Buffer.alloc(10_000, 1));
    x.failReads = { count: 100, afterBytes: 100 };
    const store = make(x);
    const fd = await store.open(ref);
    await expect(store.read(fd, Buffer.alloc(20_000), 20_000, 0)).rejects.toThrow();
    // and a later open retries from scratch
    x.failReads = { count: 0, afterBytes: 0 };
    const fd2 = await store.open(ref);
    expect(await store.read(fd2, Buffer.alloc(20_000), 20_000, 0)).toBe(10_000);
  });

  it('rejects bytes whose MD5 differs from the listed digest', async () => {
    const x = new MemoryXnat();
    const ref = { ...refFor(x, 'd.bin', Buffer.alloc(1000, 9)), digest: '0'.repeat(32) };
    const store = make(x);
    const fd = await store.open(ref);
    await expect(store.read(fd, Buffer.alloc(2000), 2000, 0)).rejects.toThrow(/MD5/);
  });

  it('prefetches the rest of a folder once a second file is opened', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 20 }, (_, i) => refFor(x, `s/${i}.dcm`, Buffer.alloc(2000, i)));
    const store = make(x, true);
    for (const r of refs.slice(0, 2)) {
      const fd = await store.open(r);
      store.noteOpen('folder', r, () => refs);
      await store.release(fd);
    }
    await store.idle();
    expect(store.stats.prefetched).toBe(18);
    const before = x.calls.length;
    for (const r of refs.slice(2)) {
      const fd = await store.open(r);
      expect((await readAll(store, fd, 2000)).equals(Buffer.alloc(2000, Number(r.path.slice(2, -4))))).toBe(true);
      await store.release(fd);
    }
    expect(x.calls.length).toBe(before);
    expect((await readdir(join(tmp.path, 'cache', 'objects'))).length).toBe(20);
  });
});
