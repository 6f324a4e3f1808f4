import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir } from 'tmp-promise';
import { createMd5, MAX_UNHASHED_BYTES, md5OfFile, unhashedBytes, WORKER_THRESHOLD } from '../../src/content/md5.js';

describe('createMd5', () => {
  it('on the worker, hashes chunks of any size and offset like createHash does', async () => {
    const data = Buffer.alloc(WORKER_THRESHOLD + 3 * 1024 * 1024 + 777);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 11)) & 0xff;
    const md5 = createMd5(data.length);
    // chunks as a socket delivers them: uneven, some views into a larger buffer
    let pos = 0;
    for (let n = 1; pos < data.length; n = (n * 7 + 13) % 300_000 + 1) {
      const end = Math.min(data.length, pos + n);
      md5.update(data.subarray(pos, end));
      pos = end;
    }
    expect(await md5.digest()).toBe(createHash('md5').update(data).digest('hex'));
  });

  it('bounds the bytes waiting for the worker: a producer faster than MD5 that awaits backlog() never queues more than the bound', async () => {
    // Copying into batches runs at memory speed, several times MD5's: without the bound the
    // worker's queue grew with the whole file.
    const chunk = Buffer.alloc(4 * 1024 * 1024, 7);
    const total = 4 * MAX_UNHASHED_BYTES;
    const hashes = [createMd5(total), createMd5(total)]; // two downloads share the one worker
    let most = 0;
    let waited = 0;
    for (let sent = 0; sent < total; sent += chunk.length) {
      for (const h of hashes) {
        h.update(chunk);
        most = Math.max(most, unhashedBytes());
        const wait = h.backlog();
        if (wait) {
          waited++;
          await wait;
        }
      }
    }
    const digests = await Promise.all(hashes.map((h) => h.digest()));
    const expected = createHash('md5');
    for (let sent = 0; sent < total; sent += chunk.length) expected.update(chunk);
    expect(digests).toEqual([expected.digest('hex'), digests[0]]);
    expect(most).toBeLessThanOrEqual(MAX_UNHASHED_BYTES + chunk.length + 1024 * 1024);
    expect(waited).toBeGreaterThan(0);
    expect(unhashedBytes()).toBe(0);
  });

  it('md5OfFile hashes the first `size` bytes of a file (a spool file that may have grown), small or large, and refuses a shorter file', async () => {
    const d = await tmpDir({ unsafeCleanup: true });
    try {
      const data = Buffer.alloc(WORKER_THRESHOLD + 12_345);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 9)) & 0xff;
      const file = join(d.path, 'spool');
      await writeFile(file, data);
      const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
      for (const size of [0, 1000, WORKER_THRESHOLD + 1]) expect(await md5OfFile(file, size)).toBe(md5(data.subarray(0, size)));
      await expect(md5OfFile(file, data.length + 1)).rejects.toThrow(/fewer/);
    } finally {
      await d.cleanup();
    }
  });
});
