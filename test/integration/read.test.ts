// Read-only use of a real mount: ls, ls -l, cp -r, find, dcm2niix, a second user, request counts.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { readFile, readdir } from 'node:fs/promises';
import { requireFuse, run } from '../helpers/fuse.js';
import { mountEmulator, type XnatMount } from '../helpers/xnat-mount.js';

const EXP = 'projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1';
const DICOM = `${EXP}/scans/4-Ax_3D_T1/resources/DICOM/files`;
const NOTES = `${EXP}/resources/NOTES/files`;
const AWKWARD = ['notes with spaces.txt', 'hash#1.txt', '100%.txt', 'a+b.txt', 'ünïcode-日本.txt'];

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

requireFuse()('read-only mount of the emulator', () => {
  let x: XnatMount;
  let tmp: DirectoryResult;
  const at = (p: string): string => join(x.mp, p);

  beforeAll(async () => {
    x = await mountEmulator();
    tmp = await tmpDir({ unsafeCleanup: true });
  });
  afterAll(async () => {
    expect(await x?.close()).toBe(0);
    await tmp?.cleanup();
  });

  it('lists the layout as design.md gives it', async () => {
    expect((await run('ls', [at('')])).stdout.trim()).toBe('projects');
    expect((await run('ls', [at('projects')])).stdout.split('\n').filter(Boolean)).toEqual(['DEMO', 'OPEN', 'PRIVATE']);
    expect((await run('ls', [at('projects/DEMO')])).stdout.split('\n').filter(Boolean).sort()).toEqual(['experiments', 'resources', 'subjects']);
    expect((await run('ls', [at('projects/DEMO/subjects')])).stdout.split('\n').filter(Boolean)).toEqual(['SUBJ01', 'SUBJ02']);
    const scans = (await run('ls', [at(`${EXP}/scans`)])).stdout.split('\n').filter(Boolean);
    expect(scans).toEqual(['1-Localizer', '4-Ax_3D_T1', '6-fMRI_rest__run_1_']);
    // the bare ID resolves to the same folder but is not listed
    const bare = await run('ls', [at(`${EXP}/scans/4/resources/DICOM/files`)]);
    expect(bare.code).toBe(0);
    expect(bare.stdout).toBe((await run('ls', [at(DICOM)])).stdout);
    // the same experiment under the project
    expect((await run('ls', [at('projects/DEMO/experiments/SUBJ01_MR1/scans')])).stdout.split('\n').filter(Boolean)).toEqual(scans);
    expect((await run('ls', [at(`${EXP}/assessors/SUBJ01_MR1_FS/resources/STATS/files`)])).stdout.trim()).toBe('aseg.stats');
    expect((await run('ls', [at('projects/DEMO/subjects/SUBJ01/resources')])).stdout.trim()).toBe('CONSENT');
    const missing = await run('ls', [at('projects/NOPE')]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/No such file or directory/);
  });

  it('ls -l shows true sizes from the listings, with a handful of requests', async () => {
    x.emulator.resetRequests();
    const out = await run('ls', ['-ln', at(DICOM)]);
    expect(out.code).toBe(0);
    const rows = out.stdout.split('\n').filter((l) => l.startsWith('-'));
    expect(rows.length).toBeGreaterThan(50);
    // sizes as stored on the emulator's disk
    for (const row of rows.slice(0, 5)) {
      const cols = row.split(/\s+/);
      const name = cols.slice(8).join(' ');
      const stored = x.emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', '4', 'DICOM', name);
      expect(stored).not.toBeNull();
      expect(Number(cols[4])).toBe((await readFile(stored!)).length);
    }
    const requests = x.emulator.requests().filter((r) => r.method === 'GET');
    expect(requests.length).toBeLessThanOrEqual(8);
    expect(requests.every((r) => !/\/files\/.+/.test(r.url.split('?')[0]!))).toBe(true);
  });

  it('cp -r copies byte-identical files, awkward names included', async () => {
    const dest = join(tmp.path, 'notes');
    const cp = await run('cp', ['-r', at(NOTES), dest]);
    expect(cp.stderr).toBe('');
    expect(cp.code).toBe(0);
    for (const name of [...AWKWARD, 'sub dir/inner#file.txt']) {
      const copied = await readFile(join(dest, name));
      const stored = await readFile(x.emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', name)!);
      expect(md5(copied), name).toBe(md5(stored));
    }
    const dcm = join(tmp.path, 'dicom');
    expect((await run('cp', ['-r', at(DICOM), dcm])).code).toBe(0);
    const names = await readdir(dcm);
    expect(names.length).toBeGreaterThan(50);
    for (const n of names) {
      const stored = await readFile(x.emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', '4', 'DICOM', n)!);
      expect(md5(await readFile(join(dcm, n)))).toBe(md5(stored));
    }
  });

  it('find walks the whole tree', async () => {
    const f = await run('find', [at('projects/DEMO'), '-type', 'f']);
    expect(f.code).toBe(0);
    const files = f.stdout.split('\n').filter(Boolean);
    expect(files).toContain(at(`${NOTES}/sub dir/inner#file.txt`));
    expect(files).toContain(at('projects/DEMO/resources/protocols/files/mri/protocol.pdf'));
    expect(files.filter((p) => p.includes('/scans/4-Ax_3D_T1/resources/DICOM/files/')).length).toBeGreaterThan(50);
  });

  it('dcm2niix on the mount gives output identical to a run on a local copy', async () => {
    const local = join(tmp.path, 'local-dicom');
    // the local copy comes straight from the emulator's disk, not through the mount
    const first = x.emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', '4', 'DICOM', (await run('ls', [at(DICOM)])).stdout.split('\n')[0]!)!;
    expect((await run('cp', ['-r', join(first, '..'), local])).code).toBe(0);
    const outMount = join(tmp.path, 'out-mount');
    const outLocal = join(tmp.path, 'out-local');
    await run('mkdir', [outMount, outLocal]);
    // A mount of its own, with an empty cache: the zip looked for below is this run's, not one an
    // earlier test here (cp -r) fetched, and it is there whatever ran before (or reset the log).
    const fresh = await mountEmulator({ reuse: x.emulator });
    let a: Awaited<ReturnType<typeof run>>;
    const sent = x.emulator.requests().length;
    try {
      a = await run('dcm2niix', ['-o', outMount, '-f', '%p_%s', join(fresh.mp, DICOM)], { timeout: 120_000 });
    } finally {
      expect(await fresh.close()).toBe(0);
    }
    const b = await run('dcm2niix', ['-o', outLocal, '-f', '%p_%s', local], { timeout: 120_000 });
    expect(a.code, a.stderr + a.stdout).toBe(0);
    expect(b.code).toBe(0);
    // the series (96 files) came as one zip of the resource, not 96 GETs
    expect(x.emulator.requests().slice(sent).some((r) => r.method === 'GET' && r.url.includes('format=zip&compression=0'))).toBe(true);
    const produced = (await readdir(outMount)).sort();
    expect(produced.some((n) => n.endsWith('.nii'))).toBe(true);
    expect(produced).toEqual((await readdir(outLocal)).sort());
    for (const n of produced) {
      expect(md5(await readFile(join(outMount, n))), n).toBe(md5(await readFile(join(outLocal, n))));
    }
  });

  it('a second user sees only the projects XNAT lets them read', async () => {
    const reader = await mountEmulator({ reuse: x.emulator, user: 'reader', password: 'reader' });
    try {
      expect((await run('ls', [join(reader.mp, 'projects')])).stdout.trim()).toBe('OPEN');
      expect((await run('ls', [join(reader.mp, 'projects/DEMO')])).code).not.toBe(0);
      expect((await run('ls', [join(reader.mp, 'projects/OPEN/subjects')])).stdout.trim()).toBe('OPEN01');
    } finally {
      expect(await reader.close()).toBe(0);
    }
  });
  it('files that came in a prefetch zip are in the disk cache for the next mount: no file request then', async () => {
    const cacheDir = join(tmp.path, 'shared-cache');
    const first = await mountEmulator({ reuse: x.emulator, stack: { cacheDir } });
    x.emulator.resetRequests();
    expect((await run('cp', ['-r', join(first.mp, DICOM), join(tmp.path, 'dicom-1')])).code).toBe(0);
    expect(x.emulator.requests().some((r) => /format=zip/.test(r.url))).toBe(true);
    expect(await first.close()).toBe(0); // writes what still waits to be written
    const second = await mountEmulator({ reuse: x.emulator, stack: { cacheDir } });
    try {
      x.emulator.resetRequests();
      const dest = join(tmp.path, 'dicom-2');
      expect((await run('cp', ['-r', join(second.mp, DICOM), dest])).code).toBe(0);
      const names = await readdir(dest);
      expect(names.length).toBeGreaterThan(50);
      for (const n of names) {
        const stored = await readFile(x.emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', '4', 'DICOM', n)!);
        expect(md5(await readFile(join(dest, n)))).toBe(md5(stored));
      }
      const fileRequests = x.emulator.requests().filter((r) => /format=zip/.test(r.url) || /\/files\/.+/.test(r.url.split('?')[0]!));
      expect(fileRequests).toEqual([]);
    } finally {
      expect(await second.close()).toBe(0);
    }
  });

  it('a file replaced on XNAT is read as its new bytes once the listing shows it, not from the kernel page cache', async () => {
    // Found in a soak: with kernel_cache the kernel kept the first version's pages across opens,
    // so md5sum gave the old bytes (same size) after ls -l showed the new time and XNAT the new MD5.
    const at = { project: 'DEMO', subject: 'SUBJ01', experiment: 'SUBJ01_MR1', resource: 'REPLACED' };
    await x.emulator.addFile({ ...at, path: 'r.txt', data: Buffer.from('version 1\n') });
    const short = await mountEmulator({ reuse: x.emulator, stack: { listingTtlMs: 1000 } });
    try {
      const file = join(short.mp, `${EXP}/resources/REPLACED/files/r.txt`);
      expect((await run('cat', [file])).stdout).toBe('version 1\n');
      expect((await run('cat', [file])).stdout).toBe('version 1\n'); // from the page cache
      await x.emulator.addFile({ ...at, path: 'r.txt', data: Buffer.from('version 2\n') }); // same size
      await new Promise((r) => setTimeout(r, 1500)); // past the listing's TTL and the kernel's
      expect((await run('cat', [file])).stdout).toBe('version 2\n');
      await x.emulator.addFile({ ...at, path: 'r.txt', data: Buffer.from('version 3, longer\n') });
      await new Promise((r) => setTimeout(r, 1500));
      expect((await run('cat', [file])).stdout).toBe('version 3, longer\n');
    } finally {
      expect(await short.close()).toBe(0);
    }
  });

  it('files keep their times across mounts: a second rsync -a copies nothing, a third only the changed resource', async () => {
    const at = { project: 'DEMO', subject: 'SUBJ01', experiment: 'SUBJ01_MR1', resource: 'TIMES' };
    for (const name of ['a.txt', 'b.txt', 'sub/c.txt']) await x.emulator.addFile({ ...at, path: name, data: Buffer.from(`first ${name}\n`) });
    const res = `${EXP}/resources/TIMES/files/`;
    const cacheDir = join(tmp.path, 'times-cache');
    const local = join(tmp.path, 'times-copy');
    const rsync = async (mp: string): Promise<string[]> => {
      const r = await run('rsync', ['-a', '--itemize-changes', join(mp, res), local]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      return r.stdout.split('\n').filter(Boolean);
    };
    const mtime = async (p: string): Promise<number> => Number((await run('stat', ['-c', '%Y', p])).stdout.trim());
    const dicomFile = `${DICOM}/SUBJ01_MR1.MR.4.0001.dcm`;
    const first = await mountEmulator({ reuse: x.emulator, stack: { cacheDir } });
    const before = await mtime(join(first.mp, res, 'a.txt'));
    const dicomBefore = await mtime(join(first.mp, dicomFile));
    expect((await rsync(first.mp)).filter((l) => l.startsWith('>f'))).toHaveLength(3);
    expect(await first.close()).toBe(0);
    // A later mount (seconds apart: rsync compares whole seconds) shows the same times.
    await new Promise((r) => setTimeout(r, 1100));
    const second = await mountEmulator({ reuse: x.emulator, stack: { cacheDir } });
    try {
      expect(await mtime(join(second.mp, res, 'a.txt'))).toBe(before);
      x.emulator.resetRequests();
      expect(await rsync(second.mp)).toEqual([]);
      expect(x.emulator.requests().filter((r) => /\/files\/.+/.test(r.url.split('?')[0]!))).toEqual([]);
    } finally {
      expect(await second.close()).toBe(0);
    }
    // Someone replaces b.txt on XNAT: the next mount shows that resource as changed (all its files
    // take the time the change was seen), and rsync copies them again; other resources keep theirs.
    await x.emulator.addFile({ ...at, path: 'b.txt', data: Buffer.from('second b.txt\n') });
    await new Promise((r) => setTimeout(r, 1100));
    const third = await mountEmulator({ reuse: x.emulator, stack: { cacheDir } });
    try {
      const changed = await rsync(third.mp);
      expect(changed.filter((l) => l.startsWith('>f')).map((l) => l.split(' ').pop()).sort()).toEqual(['a.txt', 'b.txt', 'sub/c.txt']);
      expect(await readFile(join(local, 'b.txt'), 'utf8')).toBe('second b.txt\n');
      expect(await mtime(join(third.mp, res, 'a.txt'))).toBeGreaterThan(before);
      expect(await mtime(join(third.mp, dicomFile))).toBe(dicomBefore);
    } finally {
      expect(await third.close()).toBe(0);
    }
    // A file written back through the mount: its resource shows the time of the upload, and the
    // next mount (XNAT now listing it with its MD5) the same, so make does not rebuild again.
    const fourth = await mountEmulator({ reuse: x.emulator, stack: { cacheDir } });
    let uploadedAt: number;
    try {
      await new Promise((r) => setTimeout(r, 1100));
      expect((await run('cp', [join(local, 'b.txt'), join(fourth.mp, res, 'result.txt')])).code).toBe(0);
      expect(await readFile(join(fourth.mp, res, 'result.txt'), 'utf8')).toBe('second b.txt\n');
      uploadedAt = await mtime(join(fourth.mp, res, 'a.txt'));
    } finally {
      expect(await fourth.close()).toBe(0); // waits for the upload
    }
    await new Promise((r) => setTimeout(r, 1100));
    const fifth = await mountEmulator({ reuse: x.emulator, stack: { cacheDir } });
    try {
      expect(await mtime(join(fifth.mp, res, 'result.txt'))).toBe(uploadedAt);
      expect(await mtime(join(fifth.mp, res, 'a.txt'))).toBe(uploadedAt);
    } finally {
      expect(await fifth.close()).toBe(0);
    }
  });
});
