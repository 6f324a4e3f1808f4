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
});
