// Spool notes (what the next mount resumes) are written whole and in order: a removal never runs
// before an earlier write, and drain() returns only once every note is on disk.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { noteOf, Uploader, type UploadJob } from '../../src/content/uploader.js';
import { XnatError, type Owner } from '../../src/xnat/types.js';
import { MemoryXnat } from '../helpers/memory-client.js';

const owner: Owner = { level: 'experiment', project: 'P', experiment: 'E' };

// A slow disk: writing a note takes 40 ms, so that what runs after it (a removal, a drain's
// return) would overtake it unless it waits for it.
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const writeFile: typeof fs.writeFile = async (path, ...rest) => {
    if (String(path).includes('.upload.json')) await new Promise((r) => setTimeout(r, 40));
    return fs.writeFile(path, ...rest);
  };
  return { ...fs, writeFile, default: { ...fs, writeFile } };
});

describe('Uploader spool notes', () => {
  let tmp: DirectoryResult;
  beforeEach(async () => {
    tmp = await tmpDir({ unsafeCleanup: true });
  });
  afterEach(async () => tmp.cleanup());

  const failing = async (n: number): Promise<{ up: Uploader; jobs: UploadJob[] }> => {
    const x = new MemoryXnat();
    x.uploadFile = async () => {
      throw new XnatError('server', 'HTTP 503', 503);
    };
    const up = new Uploader(x, { concurrency: 2, retryDelayMs: 60_000, maxRetryDelayMs: 60_000 }, () => undefined);
    const jobs: UploadJob[] = [];
    for (let i = 0; i < n; i++) {
      const spoolPath = join(tmp.path, `spool-${i}`);
      await writeFile(spoolPath, `bytes ${i}`);
      jobs.push({ owner, resource: 'R', path: `f${i}.txt`, spoolPath, size: `bytes ${i}`.length, overwrite: false, displayPath: `/m/f${i}.txt` });
    }
    return { up, jobs };
  };

  it('a cancelled retry leaves no note behind, even when cancelled as its note is being written', async () => {
    const { up, jobs } = await failing(20);
    for (const job of jobs) up.retryInBackground(job, new XnatError('server', 'HTTP 503', 503), async () => undefined);
    // at once: the notes' writes have only just started
    await Promise.all(jobs.map((j) => up.cancel(j.spoolPath)));
    await new Promise((r) => setTimeout(r, 100));
    expect((await readdir(tmp.path)).filter((n) => n.includes('.upload.json'))).toEqual([]);
    await up.drain(0);
  });

  it('drain returns once every note is whole on disk', async () => {
    const { up, jobs } = await failing(20);
    for (const job of jobs) up.retryInBackground(job, new XnatError('server', 'HTTP 503', 503), async () => undefined);
    const left = await up.drain(0);
    expect(left.map((l) => l.displayPath).sort()).toEqual(jobs.map((j) => j.displayPath).sort());
    for (const job of jobs) {
      const note = JSON.parse(await readFile(noteOf(job.spoolPath), 'utf8')) as { job: UploadJob };
      expect(note.job.path).toBe(job.path);
    }
    expect((await readdir(tmp.path)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    expect(await up.waiting(tmp.path)).toHaveLength(20);
  });

  // A batch job's end: cp has written the whole file and its close() waits for XNAT's answer to
  // the upload that followed the writes (begun at 8 MiB), when the wait at unmount ends. The note
  // must give the size written in all, or the next mount sees a spool file of another size, skips
  // its note and calls it "partly written" instead of uploading it.
  it('the note of an upload that followed the writes, under way at drain, gives the final size: the next mount resumes it', async () => {
    const x = new MemoryXnat();
    x.uploadFile = async (_o, _r, _p, options) => {
      if ('stream' in options) for await (const _chunk of options.stream()) { /* all sent */ }
      await new Promise(() => undefined); // XNAT stores it and has not answered yet
    };
    const up = new Uploader(x, { concurrency: 4, retryDelayMs: 60_000, maxRetryDelayMs: 60_000 }, () => undefined);
    const spoolPath = join(tmp.path, 'spool-big');
    await writeFile(spoolPath, 'first 8 MiB|and the rest of it');
    const job: UploadJob = { owner, resource: 'R', path: 'big.nii', spoolPath, size: 12, overwrite: false, displayPath: '/m/big.nii' };
    const streaming = up.startStreaming(job)!;
    streaming.grow(12); // the upload starts at 8 MiB…
    await new Promise((r) => setTimeout(r, 20));
    streaming.grow(30); // …and follows the writes to the end
    void streaming.finish(30).catch(() => undefined); // close(): waits for XNAT's answer
    await new Promise((r) => setTimeout(r, 20));
    const left = await up.drain(0);
    expect(left.map((l) => l.displayPath)).toEqual(['/m/big.nii']);
    const note = JSON.parse(await readFile(noteOf(spoolPath), 'utf8')) as { job: UploadJob };
    expect(note.job.size).toBe(30);
    const next = new Uploader(new MemoryXnat(), { concurrency: 2, retryDelayMs: 60_000, maxRetryDelayMs: 60_000 }, () => undefined);
    expect((await next.waiting(tmp.path)).map((j) => j.size)).toEqual([30]);
  });
});
