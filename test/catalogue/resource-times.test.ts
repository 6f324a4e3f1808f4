// File times kept across mounts: the same listing shows the same time on every mount sharing a
// cache folder; a changed listing (in any row order) shows the time the change was first seen.
import { describe, expect, it } from 'vitest';
import { dir as tmpDir } from 'tmp-promise';
import { readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ResourceTimes } from '../../src/catalogue/resource-times.js';
import { buildFileTree, Fingerprint } from '../../src/catalogue/file-tree.js';
import type { FileEntry } from '../../src/xnat/types.js';

const entry = (path: string, size: number, digest = ''): FileEntry => ({ path, size, digest, uri: '', resourceLabel: 'R', resourceId: '1' });
const fp = (entries: FileEntry[]): string => {
  const f = new Fingerprint();
  for (const e of entries) f.add(e);
  return f.value();
};

describe('Fingerprint', () => {
  it('ignores row order and the digest case, and changes with any path, size or digest', () => {
    const rows = [entry('a.dcm', 10, 'AB'), entry('sub/b.dcm', 20, 'cd'), entry('c.dcm', 30, '')];
    expect(fp([...rows].reverse())).toBe(fp(rows));
    expect(fp([entry('a.dcm', 10, 'ab'), rows[1]!, rows[2]!])).toBe(fp(rows));
    expect(fp(rows.slice(0, 2))).not.toBe(fp(rows));
    expect(fp([entry('a.dcm', 11, 'AB'), rows[1]!, rows[2]!])).not.toBe(fp(rows));
    expect(fp([entry('a.dcm', 10, 'AC'), rows[1]!, rows[2]!])).not.toBe(fp(rows));
    expect(fp([entry('A.dcm', 10, 'AB'), rows[1]!, rows[2]!])).not.toBe(fp(rows));
  });

  it('without() takes one file out, as a listing without it would show', () => {
    const rows = Array.from({ length: 40 }, (_, i) => entry(`d/${i}.dcm`, 1000 + i, i % 3 ? `ab${i}` : ''));
    const rest = rows.filter((_, i) => i !== 7);
    expect(Fingerprint.without(fp(rows), rows[7]!)).toBe(fp(rest));
    expect(Fingerprint.without(fp(rest), rows[8]!)).toBe(fp(rest.filter((r) => r !== rows[8])));
  });

  it('is what buildFileTree records for the listing', async () => {
    const rows = [entry('x/1.dcm', 5, 'aa'), entry('2.dcm', 6, 'bb')];
    expect((await buildFileTree(rows)).fingerprint).toBe(fp(rows));
  });
});

/** `fn` with the path of a times file in a fresh temporary folder. */
async function withTimesFile(fn: (file: string) => Promise<void>): Promise<void> {
  const tmp = await tmpDir({ unsafeCleanup: true });
  try {
    await fn(join(tmp.path, 'resource-times.json'));
  } finally {
    await tmp.cleanup();
  }
}

describe('ResourceTimes', () => {
  it('keeps a time across instances sharing the file until the listing changes', () =>
    withTimesFile(async (file) => {
      let now = 1_000_000;
      const first = new ResourceTimes(file, () => now);
      await first.load();
      expect(first.timeOf('p:P/e:E/scan:4:11', 'fp1')).toBe(1_000_000);
      now += 5_000;
      expect(first.timeOf('p:P/e:E/scan:4:11', 'fp1')).toBe(1_000_000);
      await first.flush();
      now += 60_000;
      const second = new ResourceTimes(file, () => now);
      await second.load();
      expect(second.timeOf('p:P/e:E/scan:4:11', 'fp1')).toBe(1_000_000);
      expect(second.timeOf('p:P/e:E/scan:4:11', 'fp2')).toBe(now); // changed on XNAT meanwhile
      expect(second.timeOf('p:P/resources:9', 'fpx')).toBe(now);
      await second.flush();
      const third = new ResourceTimes(file, () => now + 1);
      await third.load();
      expect(third.timeOf('p:P/e:E/scan:4:11', 'fp2')).toBe(now);
    }));

  it('forgets a resource deleted here, in memory and in the file, also when another mount saved meanwhile', () =>
    withTimesFile(async (file) => {
      const saved = async (): Promise<string[]> => Object.keys((JSON.parse(await readFile(file, 'utf8')) as { resources: object }).resources).sort();
      const t = new ResourceTimes(file, () => 1_000_000);
      await t.load();
      t.timeOf('p:P/e:E:1038', 'fpA');
      t.noteUpload('p:P/e:E:1039', '0.0.0', { path: 'x.txt', size: 3 }, null);
      t.timeOf('p:P:7', 'fpK');
      await t.flush();
      expect(await saved()).toEqual(['p:P/e:E:1038', 'p:P/e:E:1039', 'p:P:7']);
      // Another mount sharing the folder saves its own entry (and still has the deleted ones).
      const other = new ResourceTimes(file, () => 1_000_500);
      await other.load();
      other.timeOf('p:P:8', 'fpO');
      await other.flush();
      t.forget('p:P/e:E:1038');
      t.forget('p:P/e:E:1039');
      t.forget('p:P:unknown'); // never seen: nothing to do
      await t.flush();
      expect(await saved()).toEqual(['p:P:7', 'p:P:8']);
      // Seen again (it cannot be: XNAT never reuses the id), it would count as first seen now.
      expect(t.timeOf('p:P/e:E:1038', 'fpA')).toBe(1_000_000);
    }));

  it('a changed listing always shows a later time, even if the clock went back', () => {
    let now = 10_000_300;
    const t = new ResourceTimes(null, () => now);
    expect(t.timeOf('K', 'fp1')).toBe(10_000_300);
    now = 10_000_800;
    expect(t.timeOf('K', 'fp2')).toBe(10_000_800);
    // The clock was set back (NTP step, another host's clock in a shared cache folder).
    now = 5_000_000;
    const third = t.timeOf('K', 'fp3');
    expect(third).toBeGreaterThan(10_000_800);
    expect(t.timeOf('K', 'fp3')).toBe(third);
    // Many changes within one millisecond still each show a later time, but stay near the clock.
    now = 20_000_000;
    let last = 0;
    for (let i = 0; i < 1000; i++) {
      const ti = t.timeOf('K', `many${i}`);
      expect(ti).toBeGreaterThan(last);
      last = ti;
    }
    expect(last).toBeLessThan(20_000_000 + 1000);
  });

  it('two mounts that first saw the same listing keep the earlier time, whichever saves last', () =>
    withTimesFile(async (file) => {
      const a = new ResourceTimes(file, () => 100_000);
      const b = new ResourceTimes(file, () => 3_700_000); // an hour later, loaded before a saved
      await Promise.all([a.load(), b.load()]);
      expect(a.timeOf('K', 'f')).toBe(100_000);
      await a.flush(); // make built its targets after this, seeing 100 s
      b.timeOf('K', 'f');
      await b.flush();
      const c = new ResourceTimes(file, () => 9_000_000);
      await c.load();
      expect(c.timeOf('K', 'f')).toBe(100_000); // not b's later time: make would rebuild everything
      expect(b.timeOf('K', 'f')).toBe(100_000);
    }));

  it('ignores a saved time no Date can show (a damaged file)', () =>
    withTimesFile(async (file) => {
      await writeFile(file, JSON.stringify({ v: 1, resources: { A: ['f', 1e20], B: ['f', -1e17], C: ['f', 5_000] } }));
      const t = new ResourceTimes(file, () => 7_000);
      await t.load();
      for (const k of ['A', 'B', 'C']) expect(Number.isNaN(new Date(t.timeOf(k, 'f')).getTime())).toBe(false);
      expect(t.timeOf('A', 'f')).toBe(7_000);
      expect(t.timeOf('C', 'f')).toBe(5_000);
    }));

  it('keeps uploads made here pending in the file, so the next mount gives their listing the time of the upload', () =>
    withTimesFile(async (file) => {
      const base = [entry('a.dcm', 10, 'aa'), entry('__proto__', 3, 'pp')];
      let now = 1_000;
      const first = new ResourceTimes(file, () => now);
      await first.load();
      expect(first.timeOf('R', fp(base))).toBe(1_000);
      now = 2_000;
      expect(first.noteUpload('R', fp(base), { path: 'out/x.nii', size: 5 }, null)).toBe(2_000);
      now = 3_000;
      expect(first.noteUpload('R', '', { path: '__proto__', size: 4 }, base[1]!)).toBe(3_000);
      await first.flush();
      now = 9_000;
      const second = new ResourceTimes(file, () => now);
      await second.load();
      const listed = [base[0]!, entry('__proto__', 4, 'qq'), entry('out/x.nii', 5, 'xx')];
      const find = (p: string) => listed.find((e) => e.path === p);
      expect(second.timeOf('R', fp(listed), find)).toBe(3_000);
      // a size XNAT lists otherwise: not (only) ours
      const third = new ResourceTimes(file, () => now);
      const other = [base[0]!, entry('__proto__', 4, 'qq'), entry('out/x.nii', 6, 'xx')];
      third.noteUpload('S', fp(base), { path: 'out/x.nii', size: 5 }, null);
      expect(third.timeOf('S', fp(other), (p) => other.find((e) => e.path === p))).toBe(9_001); // after the upload's
    }));

  it('a new file uploaded and removed here (an editor\'s probe) leaves the time the resource showed before, listed in between or not', () => {
    let now = 1_000;
    const t = new ResourceTimes(null, () => now);
    const base = [entry('a.txt', 10, 'aa')];
    const finder = (rows: FileEntry[]) => (p: string) => rows.find((e) => e.path === p);
    expect(t.timeOf('R', fp(base), finder(base))).toBe(1_000);
    now = 2_000;
    expect(t.noteUpload('R', fp(base), { path: '.a.txt.swp', size: 0 }, null)).toBe(2_000);
    now = 3_000;
    expect(t.noteRemoved('R', entry('.a.txt.swp', 0))).toBe(1_000); // not listed in between
    now = 4_000;
    expect(t.noteUpload('R', fp(base), { path: '4913', size: 0 }, null)).toBe(4_000);
    const listed = [...base, entry('4913', 0, 'd41d8cd98f00b204e9800998ecf8427e')];
    expect(t.timeOf('R', fp(listed), finder(listed))).toBe(4_000); // XNAT lists it: ours
    now = 5_000;
    expect(t.noteRemovedListed('R', fp(base), listed[1]!)).toBe(1_000); // removed again
    // A removal of a file that was there before is a change, and so is one by someone else.
    now = 6_000;
    expect(t.noteUpload('R', fp(base), { path: 'new.txt', size: 1 }, null)).toBe(6_000);
    expect(t.noteRemoved('R', base[0]!)).toBe(6_001);
    // Written here and not listed yet, then a probe made and removed: the time of that upload,
    // which is when the file was last changed (the time it showed while it was being written).
    now = 8_000;
    expect(t.noteUpload('R', '', { path: 'b.txt', size: 2, changedAt: 7_500 }, null)).toBe(7_500);
    now = 9_000;
    expect(t.noteUpload('R', '', { path: '.b.txt.swp', size: 0 }, null)).toBe(9_000);
    expect(t.noteRemoved('R', entry('.b.txt.swp', 0))).toBe(7_500);
    // b.txt, made here, uploaded again and removed: the time of the changes still standing
    now = 10_000;
    expect(t.noteUpload('R', '', { path: 'b.txt', size: 3 }, entry('b.txt', 2))).toBe(10_000);
    expect(t.noteRemoved('R', entry('b.txt', 3))).toBe(6_001);
    // vim's :wq: its swap file (new) uploaded, the file written, the swap file uploaded again at
    // close and removed: the file's time stays the time of its own upload.
    now = 11_000;
    expect(t.noteUpload('R', '', { path: '.c.txt.swp', size: 4096 }, null)).toBe(11_000);
    now = 12_000;
    expect(t.noteUpload('R', '', { path: 'c.txt', size: 3 }, null)).toBe(12_000);
    now = 13_000;
    expect(t.noteUpload('R', '', { path: '.c.txt.swp', size: 12288 }, entry('.c.txt.swp', 4096))).toBe(13_000);
    expect(t.noteRemoved('R', entry('.c.txt.swp', 12288))).toBe(12_000);
    // one of two files made here removed: the time of the other
    now = 14_000;
    expect(t.noteUpload('R', '', { path: 'x', size: 0 }, null)).toBe(14_000);
    expect(t.noteUpload('R', '', { path: 'y', size: 0 }, null)).toBe(14_001);
    expect(t.noteRemoved('R', entry('x', 0))).toBe(14_001);
    expect(t.noteRemoved('R', entry('y', 0))).toBe(12_000);
  });

  it("a new file uploaded twice before XNAT lists it (fsync, then close): XNAT's listing of it keeps the upload's time", () => {
    let now = 1_000;
    const t = new ResourceTimes(null, () => now);
    const base = [entry('a.txt', 10, 'aa')];
    const finder = (rows: FileEntry[]) => (p: string) => rows.find((e) => e.path === p);
    expect(t.timeOf('R', fp(base), finder(base))).toBe(1_000);
    now = 2_000;
    expect(t.noteUpload('R', fp(base), { path: 'new.txt', size: 4 }, null)).toBe(2_000);
    now = 3_000;
    // the second upload replaces our first, which the cached listing shows (no digest yet)
    expect(t.noteUpload('R', '', { path: 'new.txt', size: 8 }, entry('new.txt', 4))).toBe(3_000);
    now = 9_000;
    const listed = [...base, entry('new.txt', 8, 'nn')];
    expect(t.timeOf('R', fp(listed), finder(listed))).toBe(3_000);
  });

  it('an upload of the very bytes XNAT had ends what is pending: a same-size change by someone else later shows a later time', () => {
    let now = 1_000;
    const t = new ResourceTimes(null, () => now);
    const base = [entry('a.dcm', 10, 'aa'), entry('b.dcm', 5, 'bb')];
    const finder = (rows: FileEntry[]) => (p: string) => rows.find((e) => e.path === p);
    expect(t.timeOf('R', fp(base), finder(base))).toBe(1_000);
    now = 2_000;
    expect(t.noteUpload('R', fp(base), { path: 'b.dcm', size: 5 }, base[1]!)).toBe(2_000); // cp of the same bytes
    now = 3_000;
    expect(t.timeOf('R', fp(base), finder(base))).toBe(2_000); // XNAT lists what it had: ours
    now = 4_000;
    const theirs = [base[0]!, entry('b.dcm', 5, 'cc')]; // then replaced elsewhere, as many bytes
    expect(t.timeOf('R', fp(theirs), finder(theirs))).toBe(4_000);
  });

  it("another mount's pending uploads, older than a time this mount showed, never give a changed listing that older time", () =>
    withTimesFile(async (file) => {
      const base = [entry('a.dcm', 10, 'aa'), entry('b.dcm', 5, 'bb')];
      const after = [base[0]!, entry('b.dcm', 5, 'cc')]; // b.dcm replaced through mount a
      const find = (p: string) => after.find((e) => e.path === p);
      let nowA = 1_000;
      let nowB = 1_000;
      const a = new ResourceTimes(file, () => nowA);
      const b = new ResourceTimes(file, () => nowB);
      await Promise.all([a.load(), b.load()]);
      a.timeOf('K', fp(base));
      a.timeOf('L', fp(base));
      nowA = 2_000;
      a.noteUpload('K', fp(base), { path: 'b.dcm', size: 5 }, base[1]!);
      a.noteUpload('L', fp(base), { path: 'b.dcm', size: 5 }, base[1]!);
      // b's listings were asked for before a's uploads landed, and came after (or b's clock is ahead)
      nowB = 2_500;
      expect(b.timeOf('L', fp(base))).toBe(2_500); // make in b builds from the old b.dcm after this
      await b.flush(); // before a's save
      expect(b.timeOf('K', fp(base))).toBe(2_500);
      await a.flush();
      nowB = 3_000;
      b.timeOf('M', 'm');
      await b.flush(); // reads a's pending uploads
      const c = new ResourceTimes(file, () => 8_000); // a mount that has shown nothing yet: a's time
      await c.load();
      expect(c.timeOf('K', fp(after), find)).toBe(2_000);
      nowB = 9_000;
      expect(b.timeOf('K', fp(after), find)).toBeGreaterThan(2_500);
      expect(b.timeOf('L', fp(after), find)).toBeGreaterThan(2_500);
    }));

  it('drops pending changes past 10,000 files (rm -r of a large resource), in memory and in the file', () =>
    withTimesFile(async (file) => {
      let now = 1_000;
      const t = new ResourceTimes(file, () => now);
      const files = Array.from({ length: 10_002 }, (_, i) => entry(`f${i}.dcm`, 1, 'aa'));
      expect(t.timeOf('R', fp(files))).toBe(1_000);
      now = 2_000;
      t.noteUpload('R', fp(files), { path: 'new.txt', size: 1 }, null);
      let last = 0;
      for (const f of files.slice(0, 10_001)) last = t.noteRemoved('R', f);
      await t.flush();
      const saved = JSON.parse(await readFile(file, 'utf8')) as { resources: Record<string, unknown[]> };
      expect(saved.resources['R']).toHaveLength(2); // [fp, t]: no pending changes
      // so XNAT's listing of exactly those changes shows a later time than the last one shown
      const left = [files[10_001]!, entry('new.txt', 1, 'bb')];
      expect(t.timeOf('R', fp(left), (p) => left.find((e) => e.path === p))).toBeGreaterThan(last);
    }));

  it("another mount's change, timed by a clock that is behind, still shows here later than what it replaced", () =>
    withTimesFile(async (file) => {
      const ahead = new ResourceTimes(file, () => 5_000);
      const behind = new ResourceTimes(file, () => 3_000);
      await Promise.all([ahead.load(), behind.load()]);
      expect(ahead.timeOf('K', 'fp1')).toBe(5_000);
      await ahead.flush();
      expect(behind.timeOf('K', 'fp2')).toBe(3_000); // it never saw fp1
      await behind.flush();
      ahead.timeOf('L', 'x'); // a change of its own: its save merges what the other saved
      await ahead.flush();
      expect(ahead.timeOf('K', 'fp2')).toBe(5_001); // not 3,000: before the 5,000 shown for fp1
    }));

  it('removes what a killed save left behind, once it is old, and leaves a save under way alone', () =>
    withTimesFile(async (file) => {
      const old = `${file}.dead0001.tmp`;
      const fresh = `${file}.live0002.tmp`;
      await writeFile(old, '{"v":1,');
      await writeFile(fresh, '{"v":1,');
      const hourAgo = new Date(Date.now() - 3_600_000);
      await utimes(old, hourAgo, hourAgo);
      await new ResourceTimes(file).load();
      const left = await readdir(dirname(file));
      expect(left).toContain(basename(fresh));
      expect(left).not.toContain(basename(old));
    }));

  it('merges with what another mount saved meanwhile, and ignores an unreadable file', () =>
    withTimesFile(async (file) => {
      const a = new ResourceTimes(file, () => 100);
      const b = new ResourceTimes(file, () => 200);
      await Promise.all([a.load(), b.load()]);
      a.timeOf('A', 'fa');
      b.timeOf('B', 'fb');
      await a.flush();
      await b.flush();
      const saved = JSON.parse(await readFile(file, 'utf8')) as { resources: Record<string, [string, number]> };
      expect(saved.resources).toEqual({ A: ['fa', 100], B: ['fb', 200] });
      await writeFile(file, '{ not json');
      const c = new ResourceTimes(file, () => 300);
      await c.load();
      expect(c.timeOf('A', 'fa')).toBe(300);
      await c.flush(); // replaces the broken file
      expect((JSON.parse(await readFile(file, 'utf8')) as { resources: object }).resources).toEqual({ A: ['fa', 300] });
    }));
});
