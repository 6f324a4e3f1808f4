import { afterEach, beforeEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ContentStore } from '../../src/content/content-store.js';
import { DiskCache } from '../../src/content/disk-cache.js';
import { Standing, XnatError, type FileRef, type Owner } from '../../src/xnat/types.js';
import { MemoryXnat } from '../helpers/memory-client.js';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

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
    cache = new DiskCache({ dir: join(tmp.path, 'cache'), maxBytes: 64 * 1024 * 1024 });
    await cache.init();
  });
  // Every store a test made is closed: handles a test left open would otherwise hold their
  // files until garbage collection (DEP0137).
  const stores: ContentStore[] = [];
  const kept = (store: ContentStore): ContentStore => (stores.push(store), store);
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    await tmp.cleanup();
  });

  const make = (x: MemoryXnat, prefetch = false) => kept(new ContentStore(x, {
    server: x.baseUrl, cache,
    download: { maxAttempts: 4, retryDelayMs: 1 },
    prefetch: { enabled: prefetch, concurrency: 4, maxFileBytes: 1 << 20, maxFolderBytes: 1 << 24, zipMinFiles: 1000, zipMaxBytes: 1 << 24, zipCompression: 0 },
  }));
  /** Prefetch on, a folder of 8 files or more as one zip. */
  const makeZipping = (x: MemoryXnat) => kept(new ContentStore(x, {
    server: x.baseUrl, cache,
    download: { maxAttempts: 2, retryDelayMs: 1 },
    prefetch: { enabled: true, concurrency: 4, maxFileBytes: 1 << 20, maxFolderBytes: 1 << 24, zipMinFiles: 8, zipMaxBytes: 1 << 24, zipCompression: 0 },
  }));

  it('keeps files apart that have no URI (put into a listing after an upload) and no digest', async () => {
    const x = new MemoryXnat();
    const a = { ...refFor(x, 'up/a.txt', Buffer.from('aaaa'), false), uri: '' };
    const b = { ...refFor(x, 'up/b.txt', Buffer.from('bbbb'), false), uri: '' };
    expect(make(x).keyOf(a)).not.toBe(make(x).keyOf(b));
    const store = make(x);
    for (const [ref, text] of [[a, 'aaaa'], [b, 'bbbb']] as const) {
      const fd = await store.open(ref);
      expect((await readAll(store, fd, 4)).toString()).toBe(text);
      await store.release(fd);
    }
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

  it('keeps one cache entry per file, whichever path (and listed URI) led to it', async () => {
    const x = new MemoryXnat();
    const data = Buffer.from('the same file seen from two folders');
    x.addFile(owner, 'R', 'a.txt', data);
    const id = x.resources.get(MemoryXnat.ownerKey(owner))![0]!.resource.id;
    const base = { owner, resource: id, path: 'a.txt', size: data.length, digest: createHash('md5').update(data).digest('hex') };
    const store = make(x);
    for (const uri of [`/data/experiments/E/resources/${id}/files/a.txt`, `/data/projects/P/subjects/S/experiments/E/resources/${id}/files/a.txt`]) {
      const fd = await store.open({ ...base, uri });
      expect((await readAll(store, fd, data.length)).equals(data)).toBe(true);
      await store.release(fd);
      await store.idle();
    }
    expect(x.calls.filter((c) => c.startsWith('get'))).toHaveLength(1);
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

  it('fails with an error (never short data) when every attempt drops; the next read or open asks again', async () => {
    const x = new MemoryXnat();
    const ref = refFor(x, 'h.bin', Buffer.alloc(10_000, 1));
    x.failReads = { count: 100, afterBytes: 100 };
    const store = make(x);
    const fd = await store.open(ref);
    await expect(store.read(fd, Buffer.alloc(20_000), 20_000, 0)).rejects.toThrow();
    await expect(store.read(fd, Buffer.alloc(20_000), 20_000, 0)).rejects.toThrow(); // still down
    // XNAT is back: a later open retries from scratch, and so does the handle that failed (it
    // answered EIO for as long as the program kept it open)
    x.failReads = { count: 0, afterBytes: 0 };
    const fd2 = await store.open(ref);
    expect(await store.read(fd2, Buffer.alloc(20_000), 20_000, 0)).toBe(10_000);
    const buf = Buffer.alloc(20_000);
    expect(await store.read(fd, buf, 20_000, 0)).toBe(10_000);
    expect(buf.subarray(0, 10_000).equals(Buffer.alloc(10_000, 1))).toBe(true);
    await store.release(fd);
    await store.release(fd2);
  });

  it('without a digest or a length from the server, a body shorter than listed is an error, not a file', async () => {
    const x = new MemoryXnat();
    const ref = refFor(x, 'nodigest.bin', Buffer.alloc(1000, 5), false);
    const orig = x.readFile.bind(x);
    let cut = 3;
    x.readFile = async (f, o) => {
      const r = await orig(f, o);
      if (cut-- <= 0) return r;
      const parts: Buffer[] = [];
      for await (const c of r.body) parts.push(c as Buffer);
      const { Readable } = await import('node:stream');
      return { ...r, totalSize: null, body: Readable.from([Buffer.concat(parts).subarray(0, 600)]) };
    };
    const store = make(x);
    const fd = await store.open(ref);
    // three short bodies, then the whole file: retried until complete
    expect((await readAll(store, fd, 1000)).equals(Buffer.alloc(1000, 5))).toBe(true);
  });

  it('gives up on a download whose GET timed out without a byte, instead of waiting that long again', async () => {
    const x = new MemoryXnat();
    const ref = refFor(x, 'silent.bin', Buffer.alloc(10_000, 2));
    let gets = 0;
    x.readFile = async () => {
      gets++;
      throw new XnatError('network', 'XNAT did not answer within 60 s', null, { timedOut: true });
    };
    const store = make(x);
    const fd = await store.open(ref);
    await expect(store.read(fd, Buffer.alloc(20_000), 20_000, 0)).rejects.toThrow(/did not answer/);
    // One attempt, not maxAttempts (4 here, 5 in a mount): each would wait the full timeout.
    expect(gets).toBe(1);
  });

  it('resumes a download that timed out after some bytes came', async () => {
    const x = new MemoryXnat();
    const data = Buffer.from(Array.from({ length: 40_000 }, (_, i) => i % 253));
    const ref = refFor(x, 'stalled.bin', data);
    const orig = x.readFile.bind(x);
    let gets = 0;
    x.readFile = async (f, o) => {
      if (gets++ > 0) return orig(f, o);
      const stream = new Readable({ read() {} });
      stream.push(data.subarray(0, 10_000));
      setImmediate(() => stream.destroy(new XnatError('network', 'XNAT stopped sending (nothing for 120 s)', null, { timedOut: true })));
      return { status: 200, start: 0, totalSize: data.length, lastModified: null, body: stream };
    };
    const store = make(x);
    const fd = await store.open(ref);
    expect((await readAll(store, fd, data.length)).equals(data)).toBe(true);
    expect(gets).toBe(2);
  });

  it('stops a download nobody reads any more when much is left, unless a reader comes back soon', async () => {
    const x = new MemoryXnat();
    const data = Buffer.from(Array.from({ length: 400_000 }, (_, i) => i % 241));
    const ref = refFor(x, 'large.nii', data);
    const orig = x.readFile.bind(x);
    const bodies: Readable[] = [];
    // XNAT sends 10 kB every 5 ms: 0.2 s for the whole file.
    x.readFile = async (f, o) => {
      const full = await orig(f, o);
      const bytes = Buffer.concat(await (full.body as Readable).toArray());
      let at = 0;
      const body = new Readable({ read() {} });
      const timer = setInterval(() => {
        body.push(bytes.subarray(at, (at += 10_000)));
        if (at >= bytes.length) {
          clearInterval(timer);
          body.push(null);
        }
      }, 5);
      body.on('close', () => clearInterval(timer));
      // As undici does: the request's signal ends its body.
      o?.signal?.addEventListener('abort', () => body.destroy(new Error('aborted')), { once: true });
      bodies.push(body);
      return { ...full, body };
    };
    const store = kept(new ContentStore(x, {
      server: x.baseUrl, cache, download: { maxAttempts: 2, retryDelayMs: 1 },
      prefetch: { enabled: false, concurrency: 1, maxFileBytes: 1 << 20, maxFolderBytes: 1 << 24, zipMinFiles: 1000, zipMaxBytes: 1 << 24, zipCompression: 0 },
      abandon: { remainingBytes: 100_000, afterMs: 30 },
    }));
    const head = async (): Promise<Buffer> => {
      const fd = await store.open(ref);
      const buf = Buffer.alloc(352);
      await store.read(fd, buf, 352, 0);
      await store.release(fd);
      return buf;
    };
    // Closed and opened again at once (a probe, then the read): one download goes on.
    expect((await head()).equals(data.subarray(0, 352))).toBe(true);
    const fd = await store.open(ref);
    expect((await readAll(store, fd, data.length)).equals(data)).toBe(true);
    await store.release(fd);
    expect(bodies).toHaveLength(1);
    // A probe of a file not cached yet (another key): stopped once nobody came back.
    const ref2 = refFor(x, 'large2.nii', data);
    const fd2 = await store.open(ref2);
    await store.read(fd2, Buffer.alloc(352), 352, 0);
    await store.release(fd2);
    const deadline = Date.now() + 5000;
    while (!bodies[1]?.destroyed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    expect(bodies).toHaveLength(2);
    expect(bodies[1]!.destroyed).toBe(true);
    // idle() (unmount) waits for what follows the stop: its partial file is gone when it returns.
    await store.idle();
    expect(await readdir(cache.partialDir)).toEqual([]);
    expect(cache.lookup(store.keyOf(ref2))).toBeNull();
    // The next open fetches it afresh, whole and right.
    const fd3 = await store.open(ref2);
    expect((await readAll(store, fd3, data.length)).equals(data)).toBe(true);
    await store.release(fd3);
    await store.idle();
    // A download with little left at the last close finishes and is kept.
    const ref3 = refFor(x, 'small-enough.nii', data.subarray(0, 90_000));
    const fd4 = await store.open(ref3);
    await store.read(fd4, Buffer.alloc(352), 352, 0);
    await store.release(fd4);
    await store.idle();
    expect(cache.lookup(store.keyOf(ref3))).not.toBeNull();
  });

  it('a file larger than the cache, opened again just as its last reader closes, reads right (not ENOENT)', async () => {
    // The 20 MB file cannot be kept in the 1 MB cache: once its last reader closes, its partial
    // file is deleted. A reader opening it meanwhile (xargs, make -j) shares the finished download.
    const small = new DiskCache({ dir: join(tmp.path, 'small-cache'), maxBytes: 1024 * 1024 });
    await small.init();
    const x = new MemoryXnat();
    const data = Buffer.alloc(20 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    const ref = refFor(x, 'larger-than-cache.nii', data);
    const orig = x.readFile.bind(x);
    // In 64 KiB chunks, as from a socket: the download keeps only its last 16 MiB in memory.
    x.readFile = async (f, o) => {
      const full = await orig(f, o);
      const bytes = Buffer.concat(await (full.body as Readable).toArray());
      return { ...full, body: Readable.from(Array.from({ length: Math.ceil(bytes.length / 65536) }, (_, i) => bytes.subarray(i * 65536, (i + 1) * 65536))) };
    };
    const store = kept(new ContentStore(x, {
      server: x.baseUrl, cache: small, download: { maxAttempts: 2, retryDelayMs: 1 },
      prefetch: { enabled: false, concurrency: 1, maxFileBytes: 1 << 20, maxFolderBytes: 1 << 24, zipMinFiles: 1000, zipMaxBytes: 1 << 24, zipCompression: 0 },
    }));
    const fd = await store.open(ref);
    expect((await readAll(store, fd, data.length, 1 << 20)).equals(data)).toBe(true);
    await new Promise((r) => setTimeout(r, 200)); // the download has ended (written and closed)
    const released = store.release(fd);
    const fd2 = await store.open(ref);
    await released;
    // Its head is no longer in the download's in-memory window: read from the partial file.
    const head = Buffer.alloc(4096);
    expect(await store.read(fd2, head, 4096, 0)).toBe(4096);
    expect(head.equals(data.subarray(0, 4096))).toBe(true);
    expect((await readAll(store, fd2, data.length, 1 << 20)).equals(data)).toBe(true);
    await store.release(fd2);
    await store.idle();
    expect(await readdir(small.partialDir)).toEqual([]);
  });

  it('marks prefetch GETs as background, and the GET of a file a program opened as foreground', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 6 }, (_, i) => refFor(x, `bg/${i}.dcm`, Buffer.alloc(1000, i)));
    const orig = x.readFile.bind(x);
    const seen = new Map<string, boolean>();
    x.readFile = async (f, o) => {
      seen.set(f.path, o?.background instanceof Standing ? o.background.background : o?.background === true);
      return orig(f, o);
    };
    const store = make(x, true);
    const folder = { key: 'bg', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 6000 } };
    for (const r of refs.slice(0, 2)) {
      const fd = await store.open(r);
      store.noteOpen(folder, r);
      await readAll(store, fd, 1000);
      await store.release(fd);
    }
    await store.idle();
    expect([...seen].filter(([, bg]) => !bg).map(([p]) => p).sort()).toEqual(['bg/0.dcm', 'bg/1.dcm']);
    expect([...seen].filter(([, bg]) => bg)).toHaveLength(4);
  });

  it('rejects bytes whose MD5 differs from the listed digest', async () => {
    const x = new MemoryXnat();
    const ref = { ...refFor(x, 'd.bin', Buffer.alloc(1000, 9)), digest: '0'.repeat(32) };
    const store = make(x);
    const fd = await store.open(ref);
    await expect(store.read(fd, Buffer.alloc(2000), 2000, 0)).rejects.toThrow(/MD5/);
  });

  it('checks large files (hashed on a worker thread) against their digest too', async () => {
    const x = new MemoryXnat();
    const data = Buffer.alloc(9 * 1024 * 1024 + 12_345); // not a whole number of worker batches
    for (let i = 0; i < data.length; i += 4096) data[i] = (i / 4096) % 256;
    const good = refFor(x, 'large.bin', data);
    const store = make(x);
    const fd = await store.open(good);
    expect((await readAll(store, fd, data.length, 1 << 20)).equals(data)).toBe(true);
    const bad = { ...refFor(x, 'large2.bin', data), digest: 'f'.repeat(32) };
    const fd2 = await store.open(bad);
    await expect(store.read(fd2, Buffer.alloc(data.length), data.length, 0)).rejects.toThrow(/MD5/);
  });

  it('prefetches the rest of a folder once a second file is opened', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 20 }, (_, i) => refFor(x, `s/${i}.dcm`, Buffer.alloc(2000, i)));
    const store = make(x, true);
    for (const r of refs.slice(0, 2)) {
      const fd = await store.open(r);
      store.noteOpen({ key: 'folder', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 40_000 } }, r);
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

  it("leaves a folder's large files to prefetch until a program reads one of them through, not just its header", async () => {
    const x = new MemoryXnat();
    const small = Array.from({ length: 3 }, (_, i) => refFor(x, `n/s${i}.json`, Buffer.alloc(500, i)));
    // Above 1 MiB: smaller files are served from memory, where no read is large anyway.
    const large = Array.from({ length: 4 }, (_, i) => refFor(x, `n/b${i}.nii`, Buffer.alloc(1_200_000, 10 + i)));
    const refs = [...large, ...small];
    const store = kept(new ContentStore(x, {
      server: x.baseUrl, cache, download: { maxAttempts: 2, retryDelayMs: 1 },
      prefetch: { enabled: true, concurrency: 4, maxFileBytes: 1 << 22, maxFolderBytes: 1 << 24, zipMinFiles: 1000, zipMaxBytes: 1 << 24, zipCompression: 0, largeFileBytes: 1 << 20 },
    }));
    const folder = { key: 'nifti', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 4_801_500 } };
    const gets = (): string[] => x.calls.filter((c) => c.startsWith('get')).sort();
    // Header probes of two large files: the small files come along, the other large ones do not.
    for (const r of large.slice(0, 2)) {
      const fd = await store.open(r);
      store.noteOpen(folder, r);
      await store.read(fd, Buffer.alloc(352), 352, 0);
      await store.release(fd);
    }
    await store.idle();
    expect(gets()).toEqual(['get n/b0.nii', 'get n/b1.nii', 'get n/s0.json', 'get n/s1.json', 'get n/s2.json']);
    // Read through past the threshold: the rest of the large files follow.
    const fd = await store.open(large[0]!);
    store.noteOpen(folder, large[0]!);
    expect((await readAll(store, fd, 1_200_000, 65536)).equals(Buffer.alloc(1_200_000, 10))).toBe(true);
    await store.release(fd);
    await store.idle();
    expect(gets()).toEqual(['get n/b0.nii', 'get n/b1.nii', 'get n/b2.nii', 'get n/b3.nii', 'get n/s0.json', 'get n/s1.json', 'get n/s2.json']);
  });

  it('prefetches many files through one zip of the resource, falling back to GETs for what it lacks', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 30 }, (_, i) => refFor(x, `z/${i}.dcm`, Buffer.alloc(500 + i, i)));
    let zips = 0;
    x.downloadResourceZip = async () => {
      zips++;
      // a zip holding all but the last file
      return resourceZip(join(tmp.path, 'r'), new Map(refs.slice(0, 29).map((r, i) => [r.path, Buffer.alloc(500 + i, i)])));
    };
    const store = makeZipping(x);
    for (const r of refs.slice(0, 2)) {
      const fd = await store.open(r);
      store.noteOpen({ key: 'zf', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 20_000 } }, r);
      await store.release(fd);
    }
    await store.idle();
    expect(zips).toBe(1);
    expect(store.stats.zips).toBe(1);
    const gets = x.calls.filter((c) => c.startsWith('get')).sort();
    // the two opened files and the one the zip lacked
    expect(gets).toEqual(['get z/0.dcm', 'get z/1.dcm', 'get z/29.dcm']);
    for (const r of refs) {
      const fd = await store.open(r);
      const i = Number(r.path.slice(2, -4));
      expect((await readAll(store, fd, 500 + i)).equals(Buffer.alloc(500 + i, i))).toBe(true);
      await store.release(fd);
    }
    expect(x.calls.filter((c) => c.startsWith('get'))).toHaveLength(3);
    // zip members reach the disk cache too (written behind, flushed by idle())
    await store.idle();
    expect((await readdir(join(tmp.path, 'cache', 'objects'))).length).toBe(30);
  });

  it('does not fetch on its own a zip member of a version replaced meanwhile (forget)', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 30 }, (_, i) => refFor(x, `z/${i}.dcm`, Buffer.alloc(500 + i, i), false));
    x.downloadResourceZip = async () => resourceZip(join(tmp.path, 'r'), new Map(refs.slice(0, 29).map((r, i) => [r.path, Buffer.alloc(500 + i, i)])));
    const store = makeZipping(x);
    for (const r of refs.slice(0, 2)) {
      const fd = await store.open(r);
      store.noteOpen({ key: 'zf', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 20_000 } }, r);
      await store.release(fd);
    }
    // Our upload replaced z/29.dcm (now 3 bytes) while the zip was on its way, without it.
    x.addFile(owner, 'R', 'z/29.dcm', Buffer.from('new'));
    store.forget(refs[29]!);
    await store.idle();
    expect(cache.lookup(store.keyOf(refs[29]!))).toBeNull();
    expect(x.calls.filter((c) => c.startsWith('get')).sort()).toEqual(['get z/0.dcm', 'get z/1.dcm']);
  });

  it('a file opened while its zip member is on the way waits for it; a member with a wrong digest is fetched again', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 20 }, (_, i) => refFor(x, `w/${i}.dcm`, Buffer.alloc(300 + i, i)));
    // the zip carries 7.dcm corrupted: same size, other bytes
    const bad = 7;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    x.downloadResourceZip = async () => {
      await gate;
      return resourceZip(join(tmp.path, 'w'), new Map(refs.map((r, i) => [r.path, Buffer.alloc(300 + i, i === bad ? 0xee : i)])), true);
    };
    const store = makeZipping(x);
    const folder = { key: 'wf', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 7000 } };
    store.noteListed(folder);
    const first = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    // opened before the zip has sent anything: the reads wait for the members
    const waiting = [3, bad].map(async (i) => {
      const fd = await store.open(refs[i]!);
      const data = await readAll(store, fd, 300 + i);
      await store.release(fd);
      return data;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(x.calls.filter((c) => c.startsWith('get'))).toEqual(['get w/0.dcm']);
    release();
    const [three, seven] = await Promise.all(waiting);
    expect(three!.equals(Buffer.alloc(303, 3))).toBe(true);
    expect(seven!.equals(Buffer.alloc(300 + bad, bad))).toBe(true);
    await store.release(first);
    await store.idle();
    // the opened file and the corrupt member, nothing else
    expect(x.calls.filter((c) => c.startsWith('get')).sort()).toEqual(['get w/0.dcm', `get w/${bad}.dcm`]);
  });

  it("asks for a folder's zip before choosing its files, and chooses them after the requests just made have gone out", async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 20 }, (_, i) => refFor(x, `e/${i}.dcm`, Buffer.alloc(200 + i, i)));
    const store = makeZipping(x);
    let chosenWhenAsked = -1;
    x.downloadResourceZip = async () => {
      chosenWhenAsked = store.stats.prefetched;
      return resourceZip(join(tmp.path, 'e'), new Map(refs.map((r, i) => [r.path, Buffer.alloc(200 + i, i)])), true);
    };
    const folder = { key: 'ef', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 5000 } };
    store.noteListed(folder);
    const fd = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    // undici writes a request on an idle keep-alive connection from a setImmediate: keying 2,000
    // files right here held back both that write and the GET of the file just opened
    expect(chosenWhenAsked).toBe(0);
    expect(store.stats.prefetched).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(store.stats.prefetched).toBe(0);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(store.stats.prefetched).toBe(19);
    await store.release(fd);
    await store.idle();
    for (const [i, r] of refs.entries()) {
      const h = await store.open(r);
      expect((await readAll(store, h, 200 + i)).equals(Buffer.alloc(200 + i, i))).toBe(true);
      await store.release(h);
    }
    expect(x.calls.filter((c) => c.startsWith('get'))).toEqual(['get e/0.dcm']);
  });

  it('drops a zip asked for early when fewer files than a zip is worth remain to fetch, its answer included', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 20 }, (_, i) => refFor(x, `d/${i}.dcm`, Buffer.alloc(200, i)));
    // a folder budget of five files: the zip (8 files or more) is chosen against once they are keyed
    const store = kept(new ContentStore(x, {
      server: x.baseUrl, cache,
      download: { maxAttempts: 2, retryDelayMs: 1 },
      prefetch: { enabled: true, concurrency: 4, maxFileBytes: 1 << 20, maxFolderBytes: 1000, zipMinFiles: 8, zipMaxBytes: 1 << 24, zipCompression: 0 },
    }));
    const answer = new Readable({ read() {} });
    let signal: AbortSignal | undefined;
    x.downloadResourceZip = async (_o, _r, options) => {
      signal = options?.signal;
      return answer; // answered at once, before the files are chosen
    };
    const folder = { key: 'df', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 4000 } };
    store.noteListed(folder);
    const fd = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    expect(signal?.aborted).toBe(false);
    await store.release(fd);
    await store.idle();
    expect(signal?.aborted).toBe(true);
    expect(answer.destroyed).toBe(true);
    expect(x.calls.filter((c) => c.startsWith('get')).sort()).toEqual(['get d/0.dcm', 'get d/1.dcm', 'get d/2.dcm', 'get d/3.dcm', 'get d/4.dcm', 'get d/5.dcm']);
  });

  it('checks a zip member when a program opens it, and the rest on later turns of the event loop, not while the zip comes in', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 40 }, (_, i) => refFor(x, `c/${i}.dcm`, Buffer.alloc(300 + i, i)));
    const bad = 30; // same size, other bytes: found when checked
    const zip = await resourceZip(join(tmp.path, 'c'), new Map(refs.map((r, i) => [r.path, Buffer.alloc(300 + i, i === bad ? 0xee : i)])), true);
    const chunks: Buffer[] = [];
    for await (const c of zip) chunks.push(c as Buffer);
    const store = makeZipping(x);
    // The whole zip in one chunk, handled within one turn of the event loop: at its end, nothing
    // may have been checked yet (FUSE requests wait for that turn to end).
    let checkedByTheEnd = -1;
    x.downloadResourceZip = async () => Readable.from([Buffer.concat(chunks)]).on('end', () => (checkedByTheEnd = store.stats.membersChecked));
    const folder = { key: 'cf', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 20_000 } };
    store.noteListed(folder);
    const fd = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    await vi.waitFor(() => expect(checkedByTheEnd).toBeGreaterThanOrEqual(0));
    expect(checkedByTheEnd).toBe(0);
    // opened now: checked at the open, and served from memory
    const five = store.open(refs[5]!) as number;
    expect(store.read(five, Buffer.alloc(400), 400, 0)).toBe(305);
    await store.release(five);
    await store.release(fd);
    await store.idle();
    expect(store.stats.membersChecked).toBe(39);
    for (const [i, r] of refs.entries()) {
      const h = await store.open(r);
      expect((await readAll(store, h, 300 + i)).equals(Buffer.alloc(300 + i, i)), r.path).toBe(true);
      await store.release(h);
    }
    // the corrupt one was found and fetched on its own
    expect(x.calls.filter((c) => c.startsWith('get')).sort()).toEqual(['get c/0.dcm', `get c/${bad}.dcm`]);
  });

  it('asks once for the zip of a resource whose prefetch starts by two paths before its files are chosen', async () => {
    // P/experiments/E/... and P/subjects/S/experiments/E/... are two folders of one resource: two
    // programs (cat A/f0 & cat B/f0, f0 read before and in memory, which skips the choice at
    // open) each asked for its zip; the second was aborted at the choice, but the request had
    // gone out (real mount: 4-5 zip requests for 3 resources, 3 before 7e82dbb)
    const x = new MemoryXnat();
    const refs = Array.from({ length: 20 }, (_, i) => refFor(x, `t/${i}.dcm`, Buffer.alloc(200, i)));
    const store = makeZipping(x);
    const asked: AbortSignal[] = [];
    x.downloadResourceZip = async (_o, _r, options) => {
      asked.push(options!.signal!);
      return resourceZip(join(tmp.path, 't'), new Map(refs.map((r, i) => [r.path, Buffer.alloc(200, i)])), true);
    };
    const fd0 = await store.open(refs[0]!);
    await readAll(store, fd0, 200);
    await store.release(fd0);
    await store.idle();
    const a = { key: 'a', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 5000 } };
    const b = { key: 'b', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 5000 } };
    store.noteListed(a);
    store.noteListed(b);
    const fa = await store.open(refs[0]!);
    store.noteOpen(a, refs[0]!);
    const fb = await store.open(refs[0]!);
    store.noteOpen(b, refs[0]!);
    await store.release(fa);
    await store.release(fb);
    await store.idle();
    expect(asked.map((s) => s.aborted)).toEqual([false]);
    for (const [i, r] of refs.entries()) {
      const h = await store.open(r);
      expect((await readAll(store, h, 200)).equals(Buffer.alloc(200, i))).toBe(true);
      await store.release(h);
    }
    expect(x.calls.filter((c) => c.startsWith('get'))).toEqual(['get t/0.dcm']);
  });

  it('a zip that sends nothing while a program waits for one of its members is given up for GETs: before its first byte, and after a stall halfway', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 40 }, (_, i) => refFor(x, `s/${i}.dcm`, Buffer.alloc(1000 + i, i)));
    const zipped: Buffer[] = [];
    for await (const c of await resourceZip(join(tmp.path, 's'), new Map(refs.map((r, i) => [r.path, Buffer.alloc(1000 + i, i)])), true)) zipped.push(c as Buffer);
    const whole = Buffer.concat(zipped);
    const stalling = (options?: { signal?: AbortSignal }, bytes = 0): Promise<Readable> =>
      new Promise((resolve, reject) => {
        const abort = (): void => reject(new Error('aborted'));
        options?.signal?.addEventListener('abort', abort);
        // the first `bytes` of the zip, then nothing (until the mount gives up on it)
        if (bytes > 0) {
          const r = new Readable({ read() {} });
          r.push(whole.subarray(0, bytes));
          options?.signal?.addEventListener('abort', () => r.destroy(new Error('aborted')));
          resolve(r);
        }
      });
    const storeFor = (diskCache: DiskCache): ContentStore => kept(new ContentStore(x, {
      server: x.baseUrl, cache: diskCache,
      download: { maxAttempts: 2, retryDelayMs: 1 },
      prefetch: { enabled: true, concurrency: 4, maxFileBytes: 1 << 20, maxFolderBytes: 1 << 24, zipMinFiles: 8, zipMaxBytes: 1 << 24, zipCompression: 0 },
      memberStallMs: 100,
    }));
    const readThrough = async (store: ContentStore, folder: { key: string }, i: number): Promise<void> => {
      const fd = await store.open(refs[i]!);
      expect((await readAll(store, fd, 1000 + i)).equals(Buffer.alloc(1000 + i, i)), refs[i]!.path).toBe(true);
      await store.release(fd);
      void folder;
    };
    // 1. the zip's answer never comes
    x.downloadResourceZip = async (_o, _r, options) => stalling(options);
    let store = storeFor(cache);
    let folder = { key: 'hung', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 50_000 } };
    store.noteListed(folder);
    let fd = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    await store.release(fd);
    await readThrough(store, folder, 5);
    await store.idle();
    const all = refs.map((r) => `get ${r.path}`).sort();
    // each file once: the one waited for at once, the others by the prefetch
    expect(x.calls.filter((c) => c.startsWith('get')).sort()).toEqual(all);
    for (const i of refs.keys()) await readThrough(store, folder, i);
    await store.close();
    // 2. the zip sends its first half, then stalls: members of the first half come from it
    x.calls.length = 0;
    x.downloadResourceZip = async (_o, _r, options) => stalling(options, Math.floor(whole.length / 2));
    const emptyCache = new DiskCache({ dir: join(tmp.path, 'cache2'), maxBytes: 64 * 1024 * 1024 });
    await emptyCache.init();
    store = storeFor(emptyCache);
    folder = { key: 'stalled', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 50_000 } };
    store.noteListed(folder);
    fd = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    await store.release(fd);
    // zip's member order is its folder's order on disk: find one wholly in the first half, one past it
    const at = (i: number): number => whole.indexOf(`files/s/${i}.dcm`);
    const half = Math.floor(whole.length / 2);
    const early = [...refs.keys()].find((i) => i > 0 && at(i) + 2000 < half)!;
    const late = [...refs.keys()].find((i) => i > 0 && at(i) > half)!;
    await readThrough(store, folder, early);
    await readThrough(store, folder, late);
    await store.idle();
    const gets = x.calls.filter((c) => c.startsWith('get'));
    expect(gets).toContain(`get s/${late}.dcm`);
    expect(gets).not.toContain(`get s/${early}.dcm`);
    expect(new Set(gets).size).toBe(gets.length);
    expect(gets.length).toBeLessThan(39);
    for (const i of refs.keys()) await readThrough(store, folder, i);
    expect(x.calls.filter((c) => c.startsWith('get'))).toEqual(gets);
  });

  it('a program waiting for a large member (a download of its own) of a zip that sends nothing gets the file by GET', async () => {
    const x = new MemoryXnat();
    const big = (i: number): Buffer => Buffer.alloc(1_500_000 + i, i); // over the 1 MiB kept whole in memory
    const refs = Array.from({ length: 16 }, (_, i) => refFor(x, `L/${i}.dcm`, big(i)));
    x.downloadResourceZip = async (_o, _r, options) =>
      new Promise((_resolve, reject) => options?.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    const store = kept(new ContentStore(x, {
      server: x.baseUrl, cache,
      download: { maxAttempts: 2, retryDelayMs: 1 },
      prefetch: { enabled: true, concurrency: 4, maxFileBytes: 1 << 24, maxFolderBytes: 1 << 28, zipMinFiles: 8, zipMaxBytes: 1 << 28, zipCompression: 0 },
      memberStallMs: 100,
    }));
    const folder = { key: 'large', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 30_000_000 } };
    store.noteListed(folder);
    const first = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    await store.release(first);
    const fd = await store.open(refs[7]!);
    expect((await readAll(store, fd, 1_500_007)).equals(big(7))).toBe(true);
    await store.release(fd);
    expect(x.calls).toContain('get L/7.dcm');
  });

  it("keeps the other folders' files that a folder's zip brings, so that reading them takes no zip of their own", async () => {
    const x = new MemoryXnat();
    const a = Array.from({ length: 20 }, (_, i) => refFor(x, `a/${i}.dcm`, Buffer.alloc(300 + i, i)));
    const b = Array.from({ length: 20 }, (_, i) => refFor(x, `b/${i}.dcm`, Buffer.alloc(400 + i, 100 + i)));
    const store = makeZipping(x);
    let zips = 0;
    x.downloadResourceZip = async () => {
      zips++;
      return resourceZip(join(tmp.path, 'ab'), new Map([...a.map((r, i) => [r.path, Buffer.alloc(300 + i, i)] as const), ...b.map((r, i) => [r.path, Buffer.alloc(400 + i, 100 + i)] as const)]), true);
    };
    const resource = { owner, id: 'R', totalBytes: 20_000 };
    const folderA = { key: 'a', siblings: () => a, resourceFiles: () => [...a, ...b], resource };
    const folderB = { key: 'b', siblings: () => b, resourceFiles: () => [...a, ...b], resource };
    store.noteListed(folderA);
    const fd = await store.open(a[0]!);
    store.noteOpen(folderA, a[0]!);
    await store.release(fd);
    await store.idle();
    // then the program goes on to b/
    store.noteListed(folderB);
    for (const [i, r] of b.entries()) {
      const h = await store.open(r);
      store.noteOpen(folderB, r);
      expect((await readAll(store, h, 400 + i)).equals(Buffer.alloc(400 + i, 100 + i)), r.path).toBe(true);
      await store.release(h);
    }
    await store.idle();
    expect(zips).toBe(1);
    expect(x.calls.filter((c) => c.startsWith('get'))).toEqual(['get a/0.dcm']);
  });

  it('a file opened right after its folder was listed starts the prefetch at once', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 5 }, (_, i) => refFor(x, `l/${i}.dcm`, Buffer.alloc(100, i)));
    const store = make(x, true);
    const folder = { key: 'listed', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 500 } };
    store.noteListed(folder);
    const fd = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    await store.release(fd);
    await store.idle();
    expect(store.stats.prefetched).toBe(4);
    // without a listing, one open is not enough
    const other = new MemoryXnat();
    const refs2 = Array.from({ length: 5 }, (_, i) => refFor(other, `m/${i}.dcm`, Buffer.alloc(100, i)));
    const store2 = make(other, true);
    store2.noteOpen({ ...folder, key: 'unlisted', siblings: () => refs2 }, refs2[0]!);
    await store2.idle();
    expect(store2.stats.prefetched).toBe(0);
  });

  it('reads the next listed folder ahead once the current one has arrived, one folder beyond the furthest opened', async () => {
    const x = new MemoryXnat();
    const folders = ['a', 'b', 'c'].map((name) => {
      const refs = Array.from({ length: 5 }, (_, i) => refFor(x, `${name}/${i}.dcm`, Buffer.alloc(100, i)));
      return { key: name, siblings: () => refs, resource: { owner, id: 'R', totalBytes: 1500 }, refs };
    });
    const store = make(x, true);
    for (const f of folders.slice(0, 2)) store.noteListed(f); // find, dcm2niix: listed before being read
    const gets = (name: string): number => x.calls.filter((c) => c.startsWith(`get ${name}/`)).length;
    /** A program reads file `i` of a folder; then every transfer (and what it starts) settles. */
    const read = async (f: (typeof folders)[number], i: number): Promise<void> => {
      const fd = await store.open(f.refs[i]!);
      store.noteOpen(f, f.refs[i]!);
      await store.release(fd);
      await store.idle();
      await new Promise((r) => setTimeout(r, 10));
      await store.idle();
    };
    await read(folders[0]!, 0);
    // a: the opened file and its prefetch; b: read ahead whole; c: not yet
    expect([gets('a'), gets('b'), gets('c')]).toEqual([5, 5, 0]);
    await read(folders[1]!, 0);
    expect([gets('a'), gets('b'), gets('c')]).toEqual([5, 5, 0]);
    // c is listed while b is being read (find lists ahead of cat): the next open in b finds it
    store.noteListed(folders[2]!);
    await read(folders[1]!, 1);
    expect([gets('a'), gets('b'), gets('c')]).toEqual([5, 5, 5]);
  });

  it('a program opening a file whose prefetch GET waits behind others sends it at once, ahead of them', async () => {
    const x = new MemoryXnat();
    const size = (1 << 20) + 100; // above the in-memory size: each member has a Download of its own
    const refs = Array.from({ length: 10 }, (_, i) => refFor(x, `g/${i}.dcm`, Buffer.alloc(size, i)));
    let answer!: () => void;
    const answered = new Promise<void>((r) => (answer = r));
    const orig = x.readFile.bind(x);
    const calls: Array<{ path: string; background: boolean }> = [];
    x.readFile = async (f, o) => {
      const bg = o?.background;
      calls.push({ path: f.path, background: bg instanceof Standing ? bg.background : bg === true });
      await answered; // XNAT is slow to answer: the prefetch gate (4) stays full
      return orig(f, o);
    };
    const store = kept(new ContentStore(x, {
      server: x.baseUrl, cache,
      download: { maxAttempts: 2, retryDelayMs: 1 },
      prefetch: { enabled: true, concurrency: 4, maxFileBytes: 1 << 22, maxFolderBytes: 1 << 26, zipMinFiles: 8, zipMaxBytes: 1 << 26, zipCompression: 0 },
    }));
    const folder = { key: 'gg', siblings: () => refs, resource: { owner, id: 'R', totalBytes: size * 10 } };
    store.noteListed(folder);
    const fd0 = await store.open(refs[0]!);
    store.noteOpen(folder, refs[0]!);
    const read0 = store.read(fd0, Buffer.alloc(10), 10, 0);
    // The zip fails (the in-memory client has none): the members fall back to GETs, 4 at a time.
    await vi.waitFor(() => expect(calls.filter((c) => c.background)).toHaveLength(4));
    expect(calls.map((c) => c.path)).not.toContain('g/9.dcm');
    const fd9 = await store.open(refs[9]!);
    const read9 = store.read(fd9, Buffer.alloc(10), 10, 0);
    await vi.waitFor(() => expect(calls.find((c) => c.path === 'g/9.dcm')).toEqual({ path: 'g/9.dcm', background: false }));
    expect(calls.filter((c) => c.background)).toHaveLength(4); // the others still wait for the gate
    answer();
    expect(await read9).toBe(10);
    expect(await read0).toBe(10);
    for (const fd of [fd0, fd9]) await store.release(fd);
    await store.idle();
    // Each file fetched once: the gate's later turn for 9.dcm sent nothing more.
    expect(calls.filter((c) => c.path === 'g/9.dcm')).toHaveLength(1);
    expect(calls).toHaveLength(10);
  });

  it('falls back to one GET per file when the zip fails', async () => {
    const x = new MemoryXnat();
    const refs = Array.from({ length: 20 }, (_, i) => refFor(x, `f/${i}.dcm`, Buffer.alloc(100, i)));
    const store = makeZipping(x);
    for (const r of refs.slice(0, 2)) {
      const fd = await store.open(r);
      store.noteOpen({ key: 'ff', siblings: () => refs, resource: { owner, id: 'R', totalBytes: 2000 } }, r);
      await store.release(fd);
    }
    await store.idle();
    expect(x.calls.filter((c) => c.startsWith('get'))).toHaveLength(20);
    expect((await readdir(join(tmp.path, 'cache', 'objects'))).length).toBe(20);
  });
});

describe('memberPath', () => {
  it("takes the path inside the resource from XNAT's zip layout", async () => {
    const { memberPath } = await import('../../src/content/zip-prefetch.js');
    expect(memberPath('MR1/scans/4-Ax_3D_T1/resources/DICOM/files/sub/x.dcm')).toBe('sub/x.dcm');
    expect(memberPath('P/resources/protocols/files/mri/protocol.pdf')).toBe('mri/protocol.pdf');
    expect(memberPath('MR1/resources/R/files/a/resources/B/files/c.txt')).toBe('a/resources/B/files/c.txt');
    expect(memberPath('MR1/scans/4/DICOM/x.dcm')).toBeNull();
  });
});

describe('fetchZipMembers', () => {
  it.each([
    ['in memory', undefined, undefined],
    ['spooled to disk', 1, undefined],
    ['in memory, from the central directory', undefined, 1],
    ['spooled to disk, from the central directory', 1, 1],
  ])('hands out matching members of a zip held %s', async (_how, inMemoryBytes, streamedMemberBytes) => {
    const { fetchZipMembers } = await import('../../src/content/zip-prefetch.js');
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const { execFile } = await import('node:child_process');
      const { mkdir, writeFile } = await import('node:fs/promises');
      const { createReadStream } = await import('node:fs');
      const dir = join(tmp.path, 'src/MR1/scans/4-T1/resources/DICOM/files/sub');
      await mkdir(dir, { recursive: true });
      const files = { 'a.dcm': Buffer.alloc(70_000, 1), 'b.dcm': Buffer.from('stored?'), 'sub/c.dcm': randomish(200_000) };
      await writeFile(join(dir, '../a.dcm'), files['a.dcm']);
      await writeFile(join(dir, '../b.dcm'), files['b.dcm']);
      await writeFile(join(dir, 'c.dcm'), files['sub/c.dcm']);
      await new Promise((res, rej) => execFile('zip', ['-qr', join(tmp.path, 'r.zip'), 'MR1'], { cwd: join(tmp.path, 'src') }, (e) => (e ? rej(e) : res(null))));
      const x = new MemoryXnat();
      x.downloadResourceZip = async () => createReadStream(join(tmp.path, 'r.zip'));
      const got = new Map<string, Buffer>();
      const wanted = new Map(
        Object.entries(files).map(([path, data]) => [path, {
          size: data.length,
          resolve: (m: Buffer | NodeJS.ReadableStream) => void (async () => {
            if (Buffer.isBuffer(m)) return void got.set(path, m);
            const parts: Buffer[] = [];
            for await (const c of m) parts.push(c as Buffer);
            got.set(path, Buffer.concat(parts));
          })(),
          reject: (e: Error) => void got.set(path, Buffer.from(`rejected: ${e.message}`)),
        }]),
      );
      wanted.set('missing.dcm', { size: 1, resolve: () => void got.set('missing.dcm', Buffer.from('?')), reject: () => void got.set('missing.dcm', Buffer.from('rejected')) });
      let paced = 0;
      await fetchZipMembers(x.downloadResourceZip(), 'DICOM', wanted as never, join(tmp.path, 'spool.zip'), { inMemoryBytes, streamedMemberBytes, pace: () => void paced++ });
      expect(paced).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 50));
      for (const [path, data] of Object.entries(files)) expect(got.get(path)?.equals(data), path).toBe(true);
      expect(got.get('missing.dcm')?.toString()).toBe('rejected');
    } finally {
      await tmp.cleanup();
    }
  });
});

describe('fetchZipMembers, several zips at once', () => {
  it('keeps at most the in-memory bound of zip bytes in memory across all zips, spooling the rest to disk', async () => {
    // Each folder a program reads is prefetched as its own zip: six `cp -r` of six 45 MB scans
    // held 270 MB of zips in memory (the mount peaked at 670-770 MB, against 407 MB spooled).
    const { fetchZipMembers, zipBytesInMemory } = await import('../../src/content/zip-prefetch.js');
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const zips: Array<{ work: string; files: Map<string, Buffer> }> = [];
      for (let z = 0; z < 3; z++) {
        const work = join(tmp.path, `z${z}`);
        const files = new Map(Array.from({ length: 4 }, (_, i) => [`f${i}.dcm`, randomish(100_000 + z * 10 + i)] as const));
        await resourceZip(work, files, true);
        zips.push({ work, files });
      }
      const limit = 500_000; // each zip is about 400 kB: one fits, two do not
      // A zip spooled to disk waits for 'drain' once per chunk: no listener may stay behind.
      const warnings: string[] = [];
      const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
      process.on('warning', onWarning);
      onTestFinished(() => void process.off('warning', onWarning));
      let most = 0;
      const got = new Map<string, Buffer>();
      await Promise.all(zips.map(async ({ work, files }, z) => {
        const { createReadStream } = await import('node:fs');
        const x = new MemoryXnat();
        x.downloadResourceZip = async () => createReadStream(join(work, 'r.zip'), { highWaterMark: 16_384 });
        const wanted = new Map([...files].map(([path, data]) => [path, {
          size: data.length,
          resolve: (m: Buffer | NodeJS.ReadableStream) => void (async () => {
            if (Buffer.isBuffer(m)) return void got.set(`${z}/${path}`, m);
            const parts: Buffer[] = [];
            for await (const c of m) parts.push(c as Buffer);
            got.set(`${z}/${path}`, Buffer.concat(parts));
          })(),
          reject: (e: Error) => void got.set(`${z}/${path}`, Buffer.from(`rejected: ${e.message}`)),
        }]));
        await fetchZipMembers(x.downloadResourceZip(), 'R', wanted as never, join(work, 'spool.zip'), {
          inMemoryTotalBytes: limit,
          pace: () => void (most = Math.max(most, zipBytesInMemory())),
        });
      }));
      await new Promise((r) => setTimeout(r, 50));
      for (const [z, { files }] of zips.entries()) for (const [path, data] of files) expect(got.get(`${z}/${path}`)?.equals(data), `${z}/${path}`).toBe(true);
      expect(most).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(limit);
      expect(zipBytesInMemory()).toBe(0);
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    } finally {
      await tmp.cleanup();
    }
  });
});

/** A zip of `files` (path in the resource → bytes) laid out as XNAT lays out resource zips. */
async function resourceZip(work: string, files: Map<string, Buffer>, stored = false): Promise<Readable> {
  const { execFile } = await import('node:child_process');
  const { mkdir, writeFile } = await import('node:fs/promises');
  const { createReadStream } = await import('node:fs');
  const { dirname } = await import('node:path');
  for (const [path, data] of files) {
    const abs = join(work, 'E1/resources/R/files', path);
    await mkdir(dirname(abs), { recursive: true });
    await writeFile(abs, data);
  }
  await new Promise((res, rej) => execFile('zip', [stored ? '-qr0' : '-qr', join(work, 'r.zip'), 'E1'], { cwd: work }, (e) => (e ? rej(e) : res(null))));
  return createReadStream(join(work, 'r.zip'));
}

function randomish(n: number): Buffer {
  const b = Buffer.alloc(n);
  let v = 12345;
  for (let i = 0; i < n; i++) b[i] = (v = (v * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
}
