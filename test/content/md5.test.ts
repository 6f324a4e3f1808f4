import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createMd5, WORKER_THRESHOLD } from '../../src/content/md5.js';

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
});
