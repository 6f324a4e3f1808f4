import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Download } from '../../src/content/download.js';
import type { FileRef, Owner } from '../../src/xnat/types.js';
import { MemoryXnat } from '../helpers/memory-client.js';

const owner: Owner = { level: 'experiment', project: 'P', experiment: 'E' };

/** A file on `x` whose 4 KiB blocks each start with their offset (misplaced bytes show), and its ref. */
function numberedFile(x: MemoryXnat, path: string, size: number): { data: Buffer; ref: FileRef } {
  const data = Buffer.alloc(size);
  for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
  x.addFile(owner, 'R', path, data);
  return { data, ref: { owner, resource: 'R', path, size, digest: createHash('md5').update(data).digest('hex'), uri: `/data/e/${path}` } };
}

describe('Download', () => {
  let tmp: DirectoryResult;
  beforeEach(async () => {
    tmp = await tmpDir({ unsafeCleanup: true });
  });
  afterEach(async () => {
    await tmp.cleanup();
  });

  it('holds no file bytes in memory once the file is complete on disk, and still reads right', async () => {
    // A program that keeps many large files open (nibabel's memory maps, fslmerge, paste) kept
    // each finished download's 16 MiB window: 20 files of 20 MiB took the mount to 525 MB.
    const x = new MemoryXnat();
    const { data, ref } = numberedFile(x, 'big.nii', 20 * 1024 * 1024);
    const orig = x.readFile.bind(x);
    x.readFile = async (f, o) => {
      const full = await orig(f, o);
      const bytes = Buffer.concat(await (full.body as Readable).toArray());
      return { ...full, body: Readable.from(Array.from({ length: bytes.length / 65536 }, (_, i) => bytes.subarray(i * 65536, (i + 1) * 65536))) };
    };
    const d = new Download(x, ref, join(tmp.path, 'big.nii.part'), { maxAttempts: 1, retryDelayMs: 1 });
    const tail = Buffer.alloc(65536);
    expect(await d.read(tail, 65536, data.length - 65536)).toBe(65536);
    await d.finished;
    expect(d.error).toBeNull();
    expect(d.memoryBytes).toBe(0);
    for (const pos of [0, 5 * 65536, data.length - 65536]) {
      const buf = Buffer.alloc(65536);
      expect(await d.read(buf, 65536, pos)).toBe(65536);
      expect(buf.equals(data.subarray(pos, pos + 65536))).toBe(true);
    }
    expect(await d.read(Buffer.alloc(10), 10, data.length)).toBe(0);
    await d.closeHandles();
  });

  it('a prefetch no program reads yet keeps only the bytes not on disk yet; once promoted, the window of recent bytes', async () => {
    const x = new MemoryXnat();
    const { data, ref } = numberedFile(x, 'big.nii', 40 * 1024 * 1024);
    let d: Download | null = null;
    let most = 0;
    let promotedMost = 0;
    const chunks = data.length / 65536;
    x.readFile = async () => ({
      status: 200, start: 0, totalSize: data.length, lastModified: null,
      body: Readable.from((function* () {
        for (let i = 0; i < chunks; i++) {
          if (d && i < chunks / 2) most = Math.max(most, d.memoryBytes);
          if (d && i === chunks / 2) d.promote(); // a program opens it half-way
          if (d && i > chunks / 2) promotedMost = Math.max(promotedMost, d.memoryBytes);
          yield data.subarray(i * 65536, (i + 1) * 65536);
        }
      })()),
    });
    d = new Download(x, ref, join(tmp.path, 'big.nii.part'), { maxAttempts: 1, retryDelayMs: 1 }, { background: true });
    await d.finished;
    expect(d.error).toBeNull();
    expect(most).toBeLessThanOrEqual(8 * 1024 * 1024 + 65536); // at most what waits for the disk
    expect(promotedMost).toBeGreaterThan(8 * 1024 * 1024); // a reader right behind is served from memory
    const buf = Buffer.alloc(65536);
    expect(await d.read(buf, 65536, 5 * 65536)).toBe(65536);
    expect(buf.equals(data.subarray(5 * 65536, 6 * 65536))).toBe(true);
    await d.closeHandles();
  });

  it('a read that opens the file while it moves into the cache waits for the move and opens it there', async () => {
    // A prefetch nobody read keeps no bytes in memory; its reading side was closed once nobody
    // held it. A program that came for it as it moved into the cache opened it by the old path
    // after the rename: ENOENT, an EIO for the program (seen when a stalled zip was given up).
    const x = new MemoryXnat();
    const { data, ref } = numberedFile(x, 'f.dcm', 2 * 1024 * 1024);
    const partial = join(tmp.path, 'f.dcm.part');
    const d = new Download(x, ref, partial, { maxAttempts: 1, retryDelayMs: 1 }, { background: true });
    await d.finished;
    expect(d.error).toBeNull();
    expect(d.memoryBytes).toBe(0);
    await d.closeHandles();
    const { rename } = await import('node:fs/promises');
    const cached = join(tmp.path, 'object');
    let renamed!: () => void;
    const afterRename = new Promise<void>((r) => (renamed = r));
    const moving = d.relocate(cached, async () => {
      await rename(partial, cached);
      renamed();
      await new Promise((r) => setTimeout(r, 30)); // the rest of the cache's bookkeeping
      return true;
    });
    await afterRename;
    const buf = Buffer.alloc(65536);
    expect(await d.read(buf, 65536, 4096)).toBe(65536);
    expect(buf.equals(data.subarray(4096, 4096 + 65536))).toBe(true);
    expect(await moving).toBe(true);
    expect(d.path).toBe(cached);
    await d.closeHandles();
  });

  it('keeps a small file whole in memory once complete (the store takes it from there)', async () => {
    const x = new MemoryXnat();
    const data = Buffer.from('a small file');
    x.addFile(owner, 'R', 'a.txt', data);
    const ref: FileRef = { owner, resource: 'R', path: 'a.txt', size: data.length, digest: createHash('md5').update(data).digest('hex'), uri: '/data/e/a.txt' };
    const d = new Download(x, ref, join(tmp.path, 'a.part'), { maxAttempts: 1, retryDelayMs: 1 });
    await d.finished;
    expect(d.bytes()?.equals(data)).toBe(true);
    await d.closeHandles();
  });
});
