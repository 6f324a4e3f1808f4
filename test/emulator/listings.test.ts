import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_ARCHIVE, demoFiles, startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { get, rows } from './helpers.js';

let emu: RunningEmulator;
beforeAll(async () => {
  emu = await startEmulator();
});
afterAll(async () => {
  await emu?.close();
});

const allStrings = (rs: Array<Record<string, unknown>>): boolean => rs.every((r) => Object.values(r).every((v) => typeof v === 'string'));

describe('projects', () => {
  it('lists readable projects with string cells, Java hash key order and totalRecords meta', async () => {
    const r = await get(emu, '/data/projects');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    // key order of the real sample in xnat-api §1 (HashMap order), meta after ", " with ": "
    expect(r.text).toMatch(/^\{"ResultSet":\{"Result":\[\{"pi_firstname":"","secondary_ID":"DEMO","pi_lastname":"","name":"Demo MR study","description":"[^"]*","ID":"DEMO","URI":"\/data\/projects\/DEMO"\}/);
    expect(r.text.endsWith('], "totalRecords": "3"}}')).toBe(true);
    const res = r.json().ResultSet.Result;
    expect(res.map((p: { ID: string }) => p.ID)).toEqual(['DEMO', 'OPEN', 'PRIVATE']);
    expect(allStrings(res)).toBe(true);
    expect(r.json().ResultSet.title).toBeUndefined();
  });

  it('/data, /REST and /data/archive are the same routes', async () => {
    const a = await get(emu, '/data/projects');
    const b = await get(emu, '/REST/projects');
    const c = await get(emu, '/data/archive/projects');
    expect(b.text).toBe(a.text);
    expect(c.text).toBe(a.text);
  });

  it('serves CSV and XML exactly in the XNAT table shapes', async () => {
    const csv = await get(emu, '/data/projects?format=csv&columns=ID,name');
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    expect(csv.text).toBe('ID,name,URI\nDEMO,Demo MR study,/data/projects/DEMO\nOPEN,Open dataset,/data/projects/OPEN\nPRIVATE,Private study,/data/projects/PRIVATE\n');
    const xml = await get(emu, '/data/projects?format=xml&columns=ID');
    expect(xml.headers['content-type']).toMatch(/^text\/xml/);
    expect(xml.text).toBe(
      '<ResultSet totalRecords="3"><results><columns><column>ID</column><column>URI</column></columns>\n<rows>' +
        '<row><cell>DEMO</cell><cell>/data/projects/DEMO</cell></row>\n<row><cell>OPEN</cell><cell>/data/projects/OPEN</cell></row>\n' +
        '<row><cell>PRIVATE</cell><cell>/data/projects/PRIVATE</cell></row>\n</rows></results></ResultSet>',
    );
  });

  it('escapes CSV cells only when needed and honours Accept when no format is given', async () => {
    const csv = await get(emu, '/data/experiments/XNAT_E00001/scans?format=csv&columns=ID,type');
    expect(csv.text.split('\n')).toContain('6,fMRI rest (run 1),/data/experiments/XNAT_E00001/scans/6');
    const xml = await get(emu, '/data/projects', { headers: { accept: 'text/xml' } });
    expect(xml.text.startsWith('<ResultSet')).toBe(true);
    const any = await get(emu, '/data/projects', { headers: { accept: '*/*' } });
    expect(any.text.startsWith('{"ResultSet"')).toBe(true);
  });

  it('sorts with sortBy/sortOrder', async () => {
    const r = await rows(emu, '/data/projects?sortBy=ID&sortOrder=DESC');
    expect(r.map((p) => p.ID)).toEqual(['PRIVATE', 'OPEN', 'DEMO']);
  });

  it('gives a project item and 404 for an unknown project', async () => {
    const r = await get(emu, '/data/projects/DEMO?format=json');
    expect(r.status).toBe(200);
    expect(r.json().items[0].data_fields.ID).toBe('DEMO');
    const missing = await get(emu, '/data/projects/NOPE');
    expect(missing.status).toBe(404);
    expect(missing.text).toContain('<h3>');
  });
});

describe('subjects and experiments', () => {
  it('lists subjects with accession URIs', async () => {
    const r = await rows(emu, '/data/projects/DEMO/subjects');
    expect(r).toEqual([
      expect.objectContaining({ ID: 'XNAT_S00001', label: 'SUBJ01', project: 'DEMO', URI: '/data/subjects/XNAT_S00001' }),
      expect.objectContaining({ ID: 'XNAT_S00002', label: 'SUBJ02', URI: '/data/subjects/XNAT_S00002' }),
    ]);
    expect(Object.keys(r[0]!).sort()).toEqual(['ID', 'URI', 'insert_date', 'insert_user', 'label', 'project']);
  });

  it('pages with limit/offset and drops totalRecords when offset is given', async () => {
    const limited = await get(emu, '/data/projects/DEMO/subjects?limit=1');
    expect(limited.json().ResultSet.Result).toHaveLength(1);
    expect(limited.json().ResultSet.totalRecords).toBe('2');
    const paged = await get(emu, '/data/projects/DEMO/subjects?limit=1&offset=1');
    expect(paged.json().ResultSet.Result.map((s: { label: string }) => s.label)).toEqual(['SUBJ02']);
    expect(paged.json().ResultSet.totalRecords).toBeUndefined();
  });

  it('lists experiments per project and per subject (label or accession)', async () => {
    const proj = await rows(emu, '/data/projects/DEMO/experiments');
    expect(proj.map((e) => e.label)).toEqual(['SUBJ01_MR1', 'SUBJ02_MR1']);
    expect(Object.keys(proj[0]!).sort()).toEqual(['ID', 'URI', 'date', 'insert_date', 'label', 'project', 'xsiType']);
    expect(proj[0]).toMatchObject({ ID: 'XNAT_E00001', xsiType: 'xnat:mrSessionData', date: '2024-01-15', URI: '/data/experiments/XNAT_E00001' });
    const byLabel = await rows(emu, '/data/projects/DEMO/subjects/SUBJ01/experiments');
    const byAcc = await rows(emu, '/data/projects/DEMO/subjects/XNAT_S00001/experiments');
    expect(byLabel).toEqual(byAcc);
    expect(byLabel.map((e) => e.ID)).toEqual(['XNAT_E00001']); // the assessor is not an experiment here
  });

  it('gives subject_ID under a project only when columns= asks for it (an EXPERIMENT_DATA shortcut)', async () => {
    const r = await rows(emu, '/data/projects/DEMO/experiments?columns=ID,label,subject_ID');
    expect(r.map((e) => [e.label, e.subject_ID])).toEqual([['SUBJ01_MR1', 'XNAT_S00001'], ['SUBJ02_MR1', 'XNAT_S00002']]);
    expect(Object.keys(r[0]!).sort()).toEqual(['ID', 'URI', 'label', 'subject_ID']);
  });

  it('global experiments carry subject columns and the title meta', async () => {
    const r = await get(emu, '/data/experiments?columns=ID,label,subject_label');
    const rs = r.json().ResultSet;
    expect(rs.title).toBe('Matching experiments');
    expect(rs.Result.find((e: { ID: string }) => e.ID === 'XNAT_E00004')).toEqual({ ID: 'XNAT_E00004', label: 'OPEN01_MR1', subject_label: 'OPEN01', URI: '/data/experiments/XNAT_E00004' });
  });

  it('addresses experiments by label or accession under a project, accession only at top level', async () => {
    const a = await rows(emu, '/data/projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1/scans');
    const b = await rows(emu, '/data/projects/DEMO/experiments/XNAT_E00001/scans');
    const c = await rows(emu, '/data/experiments/XNAT_E00001/scans');
    expect(a).toEqual(b);
    expect(b).toEqual(c);
    expect((await get(emu, '/data/experiments/SUBJ01_MR1/scans')).status).toBe(404);
    expect((await get(emu, '/data/subjects/SUBJ01')).status).toBe(404);
    expect((await get(emu, '/data/subjects/XNAT_S00001?format=json')).json().items[0].data_fields.label).toBe('SUBJ01');
    const unknown = await get(emu, '/data/projects/DEMO/subjects/NOBODY/experiments');
    expect(unknown.status).toBe(404);
    expect(unknown.text).toContain('<h3>Unable to identify subject NOBODY</h3>');
  });
});

describe('scans, assessors, resources', () => {
  it('lists scans with the documented columns, experiment-accession URIs and frames on request', async () => {
    const r = await rows(emu, '/data/projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1/scans');
    expect(r.map((s) => s.ID)).toEqual(['1', '4', '6']);
    expect(Object.keys(r[1]!).sort()).toEqual(['ID', 'URI', 'note', 'quality', 'series_description', 'type', 'xnat_imagescandata_id', 'xsiType']);
    expect(r[1]).toMatchObject({ type: 'Ax 3D T1', xsiType: 'xnat:mrScanData', URI: '/data/experiments/XNAT_E00001/scans/4' });
    const frames = await rows(emu, '/data/experiments/XNAT_E00001/scans?columns=ID,frames');
    expect(frames[1]).toEqual({ ID: '4', frames: '96', URI: '/data/experiments/XNAT_E00001/scans/4' });
  });

  it('lists assessors of a session', async () => {
    const r = await rows(emu, '/data/experiments/XNAT_E00001/assessors');
    expect(r).toEqual([
      expect.objectContaining({ ID: 'XNAT_E00002', label: 'SUBJ01_MR1_FS', xsiType: 'fs:fsData', session_ID: 'XNAT_E00001', session_label: 'SUBJ01_MR1', URI: '/data/experiments/XNAT_E00002' }),
    ]);
  });

  it('lists resources with exactly the XNAT columns, per level, and no URI/ID', async () => {
    const cols = ['category', 'cat_desc', 'cat_id', 'content', 'element_name', 'file_count', 'file_size', 'format', 'label', 'tags', 'xnat_abstractresource_id'];
    const scan = await get(emu, '/data/experiments/XNAT_E00001/scans/4/resources');
    const rs = scan.json().ResultSet;
    expect(rs.title).toBe('Resources');
    expect(rs.totalRecords).toBe('2');
    expect(Object.keys(rs.Result[0]).sort()).toEqual([...cols].sort());
    const dicomSize = demoFiles()
      .filter((f) => f.resourceId === '1005')
      .reduce((n, f) => n + f.size, 0);
    expect(rs.Result[0]).toEqual({
      xnat_abstractresource_id: '1005',
      label: 'DICOM',
      element_name: 'xnat:resourceCatalog',
      category: 'scans',
      cat_id: '4',
      cat_desc: 'Ax 3D T1',
      file_count: '96',
      file_size: String(dicomSize),
      tags: '',
      content: 'RAW',
      format: 'DICOM',
    });
    const exp = await rows(emu, '/data/experiments/XNAT_E00001/resources');
    expect(exp).toEqual([expect.objectContaining({ label: 'NOTES', category: 'resources', cat_id: 'XNAT_E00001', cat_desc: ' ', file_count: '6' })]);
    const proj = await rows(emu, '/data/projects/DEMO/resources');
    expect(proj).toEqual([expect.objectContaining({ label: 'protocols', xnat_abstractresource_id: '1001', cat_id: '', cat_desc: ' ' })]);
    const subj = await rows(emu, '/data/projects/DEMO/subjects/SUBJ01/resources');
    expect(subj.map((r) => r.label)).toEqual(['CONSENT']);
    const asr = await rows(emu, '/data/experiments/XNAT_E00001/assessors/SUBJ01_MR1_FS/resources');
    expect(asr).toEqual([expect.objectContaining({ label: 'STATS', category: 'assessors', cat_id: 'XNAT_E00002' })]);
    const all = await rows(emu, '/data/experiments/XNAT_E00001/resources?all=true');
    expect(all.map((r) => r.label)).toEqual(['NOTES', 'DICOM', 'DICOM', 'SNAPSHOTS', 'DICOM', 'STATS']);
  });

  it('selects scans by type, comma lists and ALL', async () => {
    const byType = await get(emu, '/data/experiments/XNAT_E00001/scans/Localizer/resources/DICOM/files');
    expect(byType.json().ResultSet.Result).toHaveLength(3);
    const list = await rows(emu, '/data/experiments/XNAT_E00001/scans/1,6/files');
    expect(list).toHaveLength(3 + 24);
    const all = await rows(emu, '/data/experiments/XNAT_E00001/scans/ALL/files');
    expect(all).toHaveLength(3 + 96 + 1 + 24);
  });
});

describe('file listings', () => {
  it('lists files with the XNAT columns, Columns block, title and no totalRecords', async () => {
    const r = await get(emu, '/data/experiments/XNAT_E00001/resources/NOTES/files');
    expect(r.text.startsWith('{"ResultSet":{"Columns":[{"key":"URI","serverRoot":""}],"Result":[')).toBe(true);
    expect(r.text.endsWith('], "title": "Files"}}')).toBe(true);
    const rs = r.json().ResultSet;
    expect(rs.totalRecords).toBeUndefined();
    const sub = rs.Result.find((f: { Name: string }) => f.Name === 'inner#file.txt');
    const expected = demoFiles().find((f) => f.path === 'sub dir/inner#file.txt')!;
    expect(sub).toEqual({
      Name: 'inner#file.txt',
      Size: String(expected.size),
      URI: '/data/experiments/XNAT_E00001/resources/1003/files/sub dir/inner#file.txt',
      collection: 'NOTES',
      file_tags: '',
      file_format: 'TXT',
      file_content: '',
      cat_ID: '1003',
      digest: expected.digest,
    });
    const names = rs.Result.map((f: { URI: string }) => f.URI.replace(/^.*\/files\//, ''));
    expect(names).toEqual(DEMO_ARCHIVE.projects[0]!.subjects[0]!.experiments[0]!.resources[0]!.files);
  });

  it('uses project/subject URIs only when the request named both, numeric resource id always', async () => {
    const ps = await rows(emu, '/data/projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1/scans/1/resources/DICOM/files');
    expect(ps[0]!.URI).toBe('/data/projects/DEMO/subjects/XNAT_S00001/experiments/XNAT_E00001/scans/1/resources/1004/files/SUBJ01_MR1.MR.1.0001.dcm');
    const pe = await rows(emu, '/data/projects/DEMO/experiments/SUBJ01_MR1/scans/1/resources/1004/files');
    expect(pe[0]!.URI).toBe('/data/experiments/XNAT_E00001/scans/1/resources/1004/files/SUBJ01_MR1.MR.1.0001.dcm');
    const proj = await rows(emu, '/data/projects/DEMO/resources/protocols/files');
    expect(proj.map((f) => f.URI)).toEqual(['/data/projects/DEMO/resources/1001/files/mri/protocol.pdf', '/data/projects/DEMO/resources/1001/files/README.txt']);
    const asr = await rows(emu, '/data/experiments/XNAT_E00001/assessors/SUBJ01_MR1_FS/out/resources/STATS/files');
    expect(asr[0]!.URI).toBe('/data/experiments/XNAT_E00001/assessors/XNAT_E00002/out/resources/1008/files/aseg.stats');
  });

  it('bulk scans/ALL/files names each scan in URIs without /data', async () => {
    const r = await rows(emu, '/data/experiments/XNAT_E00001/scans/ALL/files');
    expect(r[0]!.URI).toBe('/experiments/XNAT_E00001/scans/1/resources/1004/files/SUBJ01_MR1.MR.1.0001.dcm');
    expect(r.find((f) => f.collection === 'SNAPSHOTS')!.URI).toBe('/experiments/XNAT_E00001/scans/4/resources/1006/files/4_qc.png');
  });

  it('lists a folder with a trailing slash', async () => {
    const r = await rows(emu, '/data/projects/DEMO/resources/protocols/files/mri/');
    expect(r.map((f) => f.Name)).toEqual(['protocol.pdf']);
    const spaced = await rows(emu, '/data/experiments/XNAT_E00001/resources/NOTES/files/sub%20dir/');
    expect(spaced.map((f) => f.Name)).toEqual(['inner#file.txt']);
  });
});

describe('visibility per user', () => {
  it('the reader sees only OPEN; unreadable project lists are 403, deeper paths 404', async () => {
    const r = await rows(emu, '/data/projects', { user: 'reader:reader' });
    expect(r.map((p) => p.ID)).toEqual(['OPEN']);
    const subj = await get(emu, '/data/projects/PRIVATE/subjects', { user: 'reader:reader' });
    expect(subj.status).toBe(403);
    expect(subj.text).toContain('<h3>Unable to read subjects for Project: PRIVATE</h3>');
    expect((await get(emu, '/data/projects/DEMO/experiments', { user: 'reader:reader' })).status).toBe(403);
    expect((await get(emu, '/data/projects/NOPE/subjects', { user: 'reader:reader' })).status).toBe(404);
    expect((await get(emu, '/data/projects/DEMO/resources/protocols/files', { user: 'reader:reader' })).status).toBe(404);
    expect((await get(emu, '/data/experiments/XNAT_E00005/scans', { user: 'reader:reader' })).status).toBe(404);
    expect((await get(emu, '/data/experiments/XNAT_E00005/scans', { user: 'demo:demo' })).status).toBe(200);
    const global = await rows(emu, '/data/experiments', { user: 'reader:reader' });
    expect(global.map((e) => e.ID)).toEqual(['XNAT_E00004']);
  });
});
