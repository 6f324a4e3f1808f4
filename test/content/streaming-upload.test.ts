// StreamingUpload: a request body that follows a spool file while it is written, and gives up
// (so that XNAT stores nothing) when the writer goes quiet or the connection stalls.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendFile, writeFile } from 'node:fs/promises';
import { file as tmpFile, type FileResult } from 'tmp-promise';
import { StreamingUpload, type SendBody } from '../../src/content/streaming-upload.js';

describe('StreamingUpload', () => {
  let spool: FileResult;
  beforeEach(async () => {
    spool = await tmpFile();
  });
  afterEach(async () => {
    await spool.cleanup();
  });

  /** A "server" that reads the whole body, as XNAT parses a multipart upload before storing it. */
  const collect = (into: Buffer[]): SendBody => async (body, signal) => {
    for await (const chunk of body()) {
      if (signal.aborted) throw signal.reason as Error;
      into.push(chunk);
    }
  };

  it('sends what is written as it is written, and ends at finish()', async () => {
    const got: Buffer[] = [];
    const up = new StreamingUpload(spool.path, collect(got), { idleMs: 5000, stallMs: 5000 });
    await writeFile(spool.path, 'first ');
    up.grow(6);
    await new Promise((r) => setTimeout(r, 20));
    expect(Buffer.concat(got).toString()).toBe('first '); // sent before the writer is done
    await appendFile(spool.path, 'second');
    up.grow(12);
    await up.finish(12);
    expect(Buffer.concat(got).toString()).toBe('first second');
    expect(up.bodySent).toBe(true);
  });

  it('lets go of the spool file of an attempt dropped while it waited for writes (a 401, then the retry)', async () => {
    await writeFile(spool.path, 'first ');
    let dropped: Promise<unknown> = Promise.resolve();
    const got: Buffer[] = [];
    const send: SendBody = async (body, signal) => {
      const first = body()[Symbol.asyncIterator]();
      await first.next(); // 'first ', then it waits for more writes…
      void first.next();
      dropped = first.return!(undefined); // …when the session turns out expired: this body is dropped
      await collect(got)(body, signal); // the retry after logging in again
    };
    const up = new StreamingUpload(spool.path, send, { idleMs: 5000, stallMs: 5000 });
    up.grow(6);
    await new Promise((r) => setTimeout(r, 20));
    await appendFile(spool.path, 'second');
    await up.finish(12);
    expect(Buffer.concat(got).toString()).toBe('first second');
    // The dropped attempt ran to its end (its finally closes its handle on the spool file).
    expect(await Promise.race([dropped.then(() => 'let go'), new Promise((r) => setTimeout(() => r('still held'), 500))])).toBe('let go');
  });

  it('never sends bytes beyond what writes completed', async () => {
    const got: Buffer[] = [];
    await writeFile(spool.path, 'complete|torn');
    const up = new StreamingUpload(spool.path, collect(got), { idleMs: 5000, stallMs: 5000 });
    up.grow(8);
    await new Promise((r) => setTimeout(r, 20));
    expect(Buffer.concat(got).toString()).toBe('complete');
    up.abandon('test over');
    await expect(up.result).rejects.toThrow('test over');
  });

  it('gives up when the writer adds nothing for idleMs, before sending all', async () => {
    const got: Buffer[] = [];
    await writeFile(spool.path, 'partial');
    const up = new StreamingUpload(spool.path, collect(got), { idleMs: 60, stallMs: 5000 });
    up.grow(7);
    await expect(up.result).rejects.toThrow(/added nothing/);
    expect(up.bodySent).toBe(false);
  });

  it('gives up when the connection takes no bytes for stallMs', async () => {
    await writeFile(spool.path, Buffer.alloc(3 << 20));
    // Takes one chunk, then never asks for the next (a stalled socket). Once aborted it lets go
    // of the body, as undici does, so that the spool file is closed.
    const stuck: SendBody = async (body, signal) => {
      const it = body()[Symbol.asyncIterator]();
      try {
        await it.next();
        await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error)));
      } finally {
        await it.return!(undefined);
      }
    };
    const up = new StreamingUpload(spool.path, stuck, { idleMs: 5000, stallMs: 80 });
    up.grow(3 << 20);
    await expect(up.result).rejects.toThrow(/took no bytes/);
  });

  it('abandon() makes the body fail, so the request is cut short', async () => {
    const got: Buffer[] = [];
    await writeFile(spool.path, 'abc');
    const up = new StreamingUpload(spool.path, collect(got), { idleMs: 5000, stallMs: 5000 });
    up.grow(3);
    await new Promise((r) => setTimeout(r, 20));
    up.abandon('rewritten at byte 1');
    await expect(up.result).rejects.toThrow('rewritten at byte 1');
    await expect(up.finish(3)).rejects.toThrow('rewritten at byte 1');
  });
});
