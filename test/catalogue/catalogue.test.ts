import { describe, expect, it } from 'vitest';
import { Catalogue } from '../../src/catalogue/catalogue.js';
import { XnatError } from '../../src/xnat/types.js';
import { MemoryXnat, sampleArchive } from '../helpers/memory-client.js';

const E = '/projects/P1/subjects/S1/experiments/E1';

describe('Catalogue path resolution', () => {
  it('walks the REST-shaped layout down to a file', async () => {
    const cat = new Catalogue(sampleArchive(), { ttlMs: 60_000 });
    expect(await cat.list(await cat.resolve('/') as never)).toEqual(['projects']);
    expect(await cat.list(await cat.resolve('/projects') as never)).toEqual(['P1']);
    expect(await cat.list(await cat.resolve(`${E}`) as never)).toEqual(['scans', 'resources', 'assessors']);
    expect(await cat.list(await cat.resolve(`${E}/scans`) as never)).toEqual(['4-Ax_3D_T1']);
    const file = await cat.resolve(`${E}/scans/4-Ax_3D_T1/resources/DICOM/files/0002.dcm`);
    expect(file.kind).toBe('file');
    if (file.kind === 'file') expect(file.entry.size).toBe(1002);
  });

  it('resolves the bare scan ID and accession ids, but lists only folder names', async () => {
    const cat = new Catalogue(sampleArchive(), { ttlMs: 60_000 });
    expect((await cat.resolve(`${E}/scans/4`)).kind).toBe('scan');
    expect((await cat.resolve('/projects/P1/experiments/XNAT_E00001')).kind).toBe('experiment');
    expect((await cat.resolve('/projects/P1/experiments/E1/resources/NOTES/files/sub dir/a#b.txt')).kind).toBe('file');
  });

  it('throws PathError for names XNAT does not list', async () => {
    const cat = new Catalogue(sampleArchive(), { ttlMs: 60_000 });
    for (const p of ['/nope', '/projects/P2', `${E}/scans/5`, `${E}/scans/4/resources/DICOM/files/x.dcm`, '/projects/P1/bogus']) {
      await expect(cat.resolve(p)).rejects.toMatchObject({ name: 'PathError', kind: 'not-found' });
    }
  });

  it('passes what the client throws through (the fs layer maps it to an errno)', async () => {
    const x = sampleArchive();
    x.listSubjects = async () => { throw new XnatError('forbidden', 'Unable to read subjects', 403); };
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    await expect(cat.resolve('/projects/P1/subjects/S1')).rejects.toMatchObject({ name: 'XnatError', kind: 'forbidden' });
    const fine = new Catalogue(sampleArchive(), { ttlMs: 60_000 });
    await expect(fine.resolve(`${E}/scans/4-Ax_3D_T1/resources/DICOM/files/0001.dcm/x`)).rejects.toMatchObject({ name: 'PathError', kind: 'not-a-folder' });
  });

  it('lists a scan resource of 2,000 files with a handful of requests, then stats from memory', async () => {
    const x = sampleArchive(2000);
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    const dir = `${E}/scans/4-Ax_3D_T1/resources/DICOM/files`;
    const names = await cat.list(await cat.resolve(dir) as never);
    expect(names).toHaveLength(2000);
    const before = x.calls.length;
    await Promise.all(names.map((n) => cat.resolve(`${dir}/${n}`)));
    expect(x.calls.length).toBe(before);
    // projects, subjects, the project's experiments, scans, the experiment's resources with
    // its scans' (?all=true), one bulk scan-file listing
    expect([...x.calls].sort()).toEqual(['allresources XNAT_E00001', 'experiments P1 ', 'projects', 'scanfiles XNAT_E00001', 'scans XNAT_E00001', 'subjects P1']);
  });

  it('a cold deep path costs three waves of requests, not one per level', async () => {
    const x = sampleArchive(3);
    let inFlight = 0;
    let peak = 0;
    let waves = 0;
    const slow = <A extends unknown[], R>(fn: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
      if (inFlight === 0) waves++;
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      try {
        return await fn(...a);
      } finally {
        inFlight--;
      }
    };
    for (const m of ['listProjects', 'listSubjects', 'listExperiments', 'listScans', 'listResources', 'listAllResources', 'listAllScanFiles'] as const) {
      (x as unknown as Record<string, unknown>)[m] = slow((x[m] as (...a: unknown[]) => Promise<unknown>).bind(x));
    }
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    // one name at a time, as the kernel looks paths up
    let path = '';
    for (const c of `${E}/scans/4-Ax_3D_T1/resources/DICOM/files/0001.dcm`.split('/').filter(Boolean)) {
      path += `/${c}`;
      await cat.resolve(path);
    }
    expect((await cat.resolve(path)).kind).toBe('file');
    // projects; subjects with the project's experiments; scans with all resources and all files
    expect(waves).toBe(3);
    expect(peak).toBe(3);
    expect(x.calls).toHaveLength(6);
  });

  it('shares one request among concurrent lookups (single-flight)', async () => {
    const x = sampleArchive();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const orig = x.listProjects.bind(x);
    x.listProjects = async () => { await gate; return orig(); };
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    const all = Promise.all(Array.from({ length: 50 }, () => cat.resolve('/projects/P1')));
    release();
    await all;
    expect(x.calls.filter((c) => c === 'projects')).toHaveLength(1);
  });

  it('refetches after the TTL and after invalidation', async () => {
    const x: MemoryXnat = sampleArchive();
    const cat = new Catalogue(x, { ttlMs: 30 });
    await cat.projects();
    await new Promise((r) => setTimeout(r, 60));
    await cat.projects();
    expect(x.calls.filter((c) => c === 'projects')).toHaveLength(2);
    cat.invalidateResources({ level: 'project', project: 'P1' });
    await cat.resources({ level: 'project', project: 'P1' });
    await cat.resources({ level: 'project', project: 'P1' });
    expect(x.calls.filter((c) => c === 'resources p/P1')).toHaveLength(1);
  });

  it('ttl 0 keeps no listing: each one asks XNAT again, so resources made elsewhere show at once', async () => {
    const x: MemoryXnat = sampleArchive();
    const cat = new Catalogue(x, { ttlMs: 0 });
    const owner = { level: 'project', project: 'P1' } as const;
    const labels = async (): Promise<string[]> => cat.list(await cat.resolve('/projects/P1/resources') as never);
    const before = await labels();
    await x.createResource(owner, 'MADE_WITH_CURL'); // by another client: no invalidation here
    expect(await labels()).toEqual([...before, 'MADE_WITH_CURL']);
    expect(x.calls.filter((c) => c === 'resources p/P1')).toHaveLength(2);
    expect(x.calls.filter((c) => c === 'projects')).toHaveLength(2);
    // Concurrent callers still share one request.
    await Promise.all([cat.projects(), cat.projects(), cat.projects()]);
    expect(x.calls.filter((c) => c === 'projects')).toHaveLength(3);
  });

  it('falls back to per-resource listings when the bulk scan listing is unavailable', async () => {
    const x = sampleArchive(3);
    x.listAllScanFiles = async () => { throw new XnatError('not-found', 'no route', 404); };
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    const names = await cat.list(await cat.resolve(`${E}/scans/4/resources/DICOM/files`) as never);
    expect(names).toEqual(['0000.dcm', '0001.dcm', '0002.dcm']);
  });

  it('without subject_ID in the project listing or without resources?all, lists per subject and per scan', async () => {
    const x = sampleArchive(3);
    // a server that drops the subject_ID column and does not know ?all=true
    const projectWide = x.listExperiments.bind(x);
    x.listExperiments = async (p, s) => (await projectWide(p, s)).map((e) => (s === undefined ? { ...e, subjectId: '' } : e));
    x.listAllResources = async () => { throw new XnatError('bad-request', 'unknown parameter', 400); };
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    const names = await cat.list(await cat.resolve(`${E}/scans/4-Ax_3D_T1/resources/DICOM/files`) as never);
    expect(names).toEqual(['0000.dcm', '0001.dcm', '0002.dcm']);
    expect(x.calls).toContain('experiments P1 XNAT_S00001');
    expect(x.calls).toContain('resources e/XNAT_E00001/scan/4');
  });

  it('does not take a server that ignores ?all=true or leaves a resource out of scans/ALL/files at its word', async () => {
    const x = sampleArchive(3);
    const all = x.listAllResources.bind(x);
    x.listAllResources = async (p, e) => (await all(p, e)).filter((r) => r.category === 'resources'); // `all` ignored
    x.listAllScanFiles = async () => []; // nothing for any scan
    const dicom = x.resources.get('e/XNAT_E00001/scan/4')![0]!.resource;
    dicom.fileCount = 3; // …while the resource says it has files
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    const names = await cat.list(await cat.resolve(`${E}/scans/4-Ax_3D_T1/resources/DICOM/files`) as never);
    expect(names).toEqual(['0000.dcm', '0001.dcm', '0002.dcm']);
    expect(x.calls).toContain('resources e/XNAT_E00001/scan/4');
    expect(x.calls).toContain(`files e/XNAT_E00001/scan/4 ${dicom.id}`);
  });

  it("a subject's experiments and a scan's resources come from the wider listings, which a new resource refreshes", async () => {
    const x = sampleArchive(2);
    const other = { id: 'XNAT_E00002', label: 'E2', project: 'P1', xsiType: 'xnat:mrSessionData', date: '', insertDate: '', subjectId: 'XNAT_S00002' };
    x.experiments.get('P1')!.push(other);
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    await cat.resolve(`${E}/scans/4-Ax_3D_T1/resources/DICOM`);
    // only the subject's own experiment, though the project holds two
    expect(await cat.list(await cat.resolve('/projects/P1/subjects/S1/experiments') as never)).toEqual(['E1']);
    // the experiment's own resources too (category "resources" of the ?all=true listing)
    expect(await cat.list(await cat.resolve(`${E}/resources`) as never)).toEqual(['NOTES']);
    expect(x.calls.filter((c) => c.startsWith('experiments') || c.startsWith('resources'))).toEqual(['experiments P1 ']);
    // mkdir of a scan resource: both listings are asked again
    const scan = { level: 'scan' as const, project: 'P1', experiment: 'XNAT_E00001', scan: '4' };
    x.addFile(scan, 'NIFTI', 'out.nii', Buffer.from('n'));
    cat.invalidateResources(scan);
    expect(await cat.list(await cat.resolve(`${E}/scans/4-Ax_3D_T1/resources`) as never)).toEqual(['DICOM', 'NIFTI']);
  });
});

describe('ListingCache invalidation', () => {
  it('an invalidation spoils only the loads of its own key', async () => {
    const { ListingCache } = await import('../../src/catalogue/listing-cache.js');
    const cache = new ListingCache({ ttlMs: 60_000, maxEntries: 100 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let loadsA = 0;
    let loadsB = 0;
    const a = cache.get('a', async () => { loadsA++; await gate; return 'A'; });
    const b = cache.get('b', async () => { loadsB++; await gate; return 'B'; });
    cache.invalidate('b');
    release();
    expect(await a).toBe('A');
    expect(await b).toBe('B');
    await cache.get('a', async () => { loadsA++; return 'A2'; });
    expect(loadsA).toBe(1); // kept: another key's invalidation does not spoil it
    expect(await cache.get('b', async () => { loadsB++; return 'B2'; })).toBe('B2');
    expect(loadsB).toBe(2); // reloaded: its load was in flight when it was invalidated
  });
});

describe('Catalogue walk-ahead (find, du, cp -r)', () => {
  /** Project P1 with `n` subjects S1…Sn, one experiment each (E1…En, XNAT_E00001…). */
  function manySubjects(n: number): MemoryXnat {
    const x = new MemoryXnat();
    x.projects = [{ id: 'P1', name: '', secondaryId: '', description: '' }];
    const id = (k: string, i: number): string => `XNAT_${k}${String(i).padStart(5, '0')}`;
    x.subjects.set('P1', Array.from({ length: n }, (_, i) => ({ id: id('S', i + 1), label: `S${i + 1}`, project: 'P1', insertDate: '' })));
    x.experiments.set('P1', Array.from({ length: n }, (_, i) => ({ id: id('E', i + 1), label: `E${i + 1}`, project: 'P1', xsiType: 'xnat:mrSessionData', date: '', insertDate: '', subjectId: id('S', i + 1) })));
    return x;
  }

  it('entering one subject reads nothing ahead; entering the next one in listing order reads the next four', async () => {
    const x = manySubjects(10);
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    await cat.list((await cat.resolve('/projects/P1/subjects')) as never);
    await cat.resolve('/projects/P1/subjects/S1/resources');
    await new Promise((r) => setTimeout(r, 10));
    expect(x.calls.filter((c) => c.startsWith('scans'))).toEqual([]);
    await cat.resolve('/projects/P1/subjects/S2/resources');
    await new Promise((r) => setTimeout(r, 10));
    // S3…S6: their resources and their experiments' listings, before anyone entered them
    expect(x.calls.filter((c) => c.startsWith('resources s/')).sort()).toEqual(
      ['XNAT_S00003', 'XNAT_S00004', 'XNAT_S00005', 'XNAT_S00006'].map((s) => `resources s/${s}`),
    );
    expect(x.calls.filter((c) => c.startsWith('scans')).sort()).toEqual(['scans XNAT_E00003', 'scans XNAT_E00004', 'scans XNAT_E00005', 'scans XNAT_E00006']);
    expect(x.calls).toContain('scanfiles XNAT_E00006');
    expect(x.calls).toContain('assessors XNAT_E00006');
    // Going on costs one more subject ahead each step, and nothing twice.
    await cat.resolve('/projects/P1/subjects/S3/resources');
    await new Promise((r) => setTimeout(r, 10));
    expect(x.calls.filter((c) => c.startsWith('scans')).sort()).toEqual(['scans XNAT_E00003', 'scans XNAT_E00004', 'scans XNAT_E00005', 'scans XNAT_E00006', 'scans XNAT_E00007']);
  });

  it('walking P/experiments reads the next experiments ahead the same way', async () => {
    const x = manySubjects(8);
    const cat = new Catalogue(x, { ttlMs: 60_000 });
    await cat.list((await cat.resolve('/projects/P1/experiments')) as never);
    await cat.resolve('/projects/P1/experiments/E5/scans');
    await cat.resolve('/projects/P1/experiments/E6/scans');
    await new Promise((r) => setTimeout(r, 10));
    expect(x.calls.filter((c) => c.startsWith('scans')).sort()).toEqual(['scans XNAT_E00005', 'scans XNAT_E00006', 'scans XNAT_E00007', 'scans XNAT_E00008']);
  });
});

describe('Catalogue file times', () => {
  const DICOM = `${E}/scans/4-Ax_3D_T1/resources/DICOM/files`;
  /** An archive, times kept in memory on a clock the test moves, and the time a file shows. */
  const timesSetup = async () => {
    const { ResourceTimes } = await import('../../src/catalogue/resource-times.js');
    const x = sampleArchive(3);
    const clock = { now: 1_000_000 };
    const times = new ResourceTimes(null, () => clock.now);
    const shown = async (cat: Catalogue, name: string): Promise<number> => {
      const n = await cat.resolve(`${DICOM}/${name}`);
      if (n.kind !== 'file') throw new Error('not a file');
      return n.shownAt;
    };
    return { x, clock, times, shown };
  };

  it('a file removed here: the next mount sharing the times shows the rest at the time of the rm, not as new again', async () => {
    const { x, clock, times, shown } = await timesSetup();
    const first = new Catalogue(x, { ttlMs: 60_000, times });
    expect(await shown(first, '0001.dcm')).toBe(1_000_000);
    clock.now += 60_000;
    const gone = await first.resolve(`${DICOM}/0002.dcm`);
    if (gone.kind !== 'file') throw new Error('not a file');
    await x.deleteFile(gone.owner, gone.resource.label, gone.entry.path);
    first.forgetFile(gone.owner, gone.resource, gone.components);
    const afterRm = await shown(first, '0001.dcm');
    expect(afterRm).toBe(1_060_000);
    // Unmounted, mounted again later: XNAT lists what this mount last showed, so nothing is new.
    clock.now += 60_000;
    const second = new Catalogue(x, { ttlMs: 60_000, times });
    expect(await shown(second, '0001.dcm')).toBe(afterRm);
  });

  it('files uploaded here keep the time of the upload once XNAT lists them with its MD5; a change by someone else does not', async () => {
    const { x, clock, times, shown } = await timesSetup();
    const first = new Catalogue(x, { ttlMs: 60_000, times });
    expect(await shown(first, '0001.dcm')).toBe(1_000_000);
    const { owner, resource } = (await first.resolve(`${DICOM}/0001.dcm`)) as Extract<Awaited<ReturnType<Catalogue['resolve']>>, { kind: 'file' }>;
    // cp of a new file and over an existing one; what XNAT then holds is what was sent
    const upload = (path: string, data: string): void => {
      x.addFile(owner, resource.label, path, Buffer.from(data));
      first.noteUploaded(owner, resource.label, { path, size: data.length });
    };
    clock.now += 60_000;
    upload('result.nii', 'nifti bytes');
    clock.now += 1_000;
    upload('0003.dcm', 'a new third slice');
    const uploadedAt = await shown(first, 'result.nii');
    expect(uploadedAt).toBe(1_061_000);
    expect(await shown(first, '0001.dcm')).toBe(uploadedAt);
    // A later mount lists XNAT's view, with its MD5s: exactly what was uploaded, so nothing is new.
    clock.now += 60_000;
    const second = new Catalogue(x, { ttlMs: 60_000, times });
    expect(await shown(second, 'result.nii')).toBe(uploadedAt);
    expect(await shown(second, '0001.dcm')).toBe(uploadedAt);
    // Someone else's change after that: a later time, as before.
    clock.now += 60_000;
    x.addFile(owner, resource.label, '0002.dcm', Buffer.from('changed elsewhere'));
    const third = new Catalogue(x, { ttlMs: 60_000, times });
    expect(await shown(third, '0001.dcm')).toBe(clock.now);
  });

  it('a file uploaded here with the bytes XNAT had, then replaced elsewhere by as many bytes, shows a later time', async () => {
    const { x, clock, times, shown } = await timesSetup();
    const first = new Catalogue(x, { ttlMs: 60_000, times });
    const node = await first.resolve(`${DICOM}/0002.dcm`);
    if (node.kind !== 'file') throw new Error('not a file');
    clock.now += 60_000;
    x.addFile(node.owner, node.resource.label, '0002.dcm', Buffer.alloc(1002, 2)); // cp of the same bytes
    first.noteUploaded(node.owner, node.resource.label, { path: '0002.dcm', size: 1002 });
    const uploadedAt = await shown(first, '0002.dcm');
    clock.now += 60_000;
    expect(await shown(new Catalogue(x, { ttlMs: 60_000, times }), '0002.dcm')).toBe(uploadedAt);
    clock.now += 60_000;
    x.addFile(node.owner, node.resource.label, '0002.dcm', Buffer.alloc(1002, 7)); // someone else's
    expect(await shown(new Catalogue(x, { ttlMs: 60_000, times }), '0002.dcm')).toBe(clock.now);
  });

  it('an upload XNAT lists together with a change by someone else shows the later time', async () => {
    const { x, clock, times, shown } = await timesSetup();
    const dir = `${E}/scans/4-Ax_3D_T1/resources/DICOM/files`;
    const first = new Catalogue(x, { ttlMs: 60_000, times });
    const node = await first.resolve(`${DICOM}/0001.dcm`);
    if (node.kind !== 'file') throw new Error('not a file');
    clock.now += 60_000;
    x.addFile(node.owner, node.resource.label, 'mine.txt', Buffer.from('mine'));
    first.noteUploaded(node.owner, node.resource.label, { path: 'mine.txt', size: 4 });
    x.addFile(node.owner, node.resource.label, 'theirs.txt', Buffer.from('theirs'));
    clock.now += 60_000;
    const second = new Catalogue(x, { ttlMs: 60_000, times });
    const later = await second.resolve(`${DICOM}/mine.txt`);
    expect(later.kind === 'file' && later.shownAt).toBe(clock.now);
  });
});
