import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MTIME, demoFiles, startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { call, get } from './helpers.js';

const run = promisify(execFile);
let emu: RunningEmulator;
let work: string;
beforeAll(async () => {
  emu = await startEmulator();
  work = await mkdtemp(path.join(tmpdir(), 'xnatfs-emu-files-'));
});
afterAll(async () => {
  await emu?.close();
  await rm(work, { recursive: true, force: true });
});

const demo = (resourceId: string, rel: string) => demoFiles().find((f) => f.resourceId === resourceId && f.path === rel)!;
const T1 = '/data/experiments/XNAT_E00001/scans/4/resources/DICOM/files';
const NOTES = '/data/experiments/XNAT_E00001/resources/NOTES/files';

async function unzipList(buf: Buffer): Promise<string[]> {
  const p = path.join(work, `z${Math.random().toString(36).slice(2)}.zip`);
  await writeFile(p, buf);
  await run('unzip', ['-tq', p]); // CRCs and structure must check out
  const { stdout } = await run('unzip', ['-Z1', p]);
  return stdout.trim().split('\n');
}

describe('single file GET/HEAD', () => {
  it('serves the bytes with XNAT headers', async () => {
    const f = demo('1005', 'SUBJ01_MR1.MR.4.0001.dcm');
    const r = await get(emu, `${T1}/SUBJ01_MR1.MR.4.0001.dcm`);
    expect(r.status).toBe(200);
    expect(r.body.equals(f.data)).toBe(true);
    expect(r.headers['content-type']).toBe('application/octet-stream');
    expect(r.headers['content-disposition']).toBe('attachment; filename="SUBJ01_MR1.MR.4.0001.dcm";');
    expect(r.headers['cache-control']).toBe('must-revalidate');
    expect(r.headers['content-length']).toBe(String(f.size));
    expect(r.headers['last-modified']).toBe(DEMO_MTIME.toUTCString());
    expect(r.headers.etag).toBeUndefined();
    const txt = await get(emu, '/data/projects/DEMO/resources/protocols/files/README.txt');
    expect(txt.headers['content-type']).toBe('text/plain');
    const pdf = await get(emu, '/data/projects/DEMO/resources/protocols/files/mri/protocol.pdf');
    expect(pdf.headers['content-type']).toBe('application/pdf');
    expect(pdf.body.subarray(0, 5).toString()).toBe('%PDF-');
  });

  it('HEAD gives the headers only', async () => {
    const f = demo('1006', '4_qc.png');
    const r = await call(emu, 'HEAD', '/data/experiments/XNAT_E00001/scans/4/resources/SNAPSHOTS/files/4_qc.png');
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(0);
    expect(r.headers['content-length']).toBe(String(f.size));
    expect(r.headers['content-type']).toBe('image/png');
    expect(r.headers['last-modified']).toBe(DEMO_MTIME.toUTCString());
  });

  it('missing files are 404 with an empty body; resource by numeric id works', async () => {
    const r = await get(emu, `${T1}/nope.dcm`);
    expect(r.status).toBe(404);
    expect(r.body.length).toBe(0);
    const byId = await get(emu, '/data/experiments/XNAT_E00001/scans/4/resources/1005/files/SUBJ01_MR1.MR.4.0002.dcm');
    expect(byId.body.equals(demo('1005', 'SUBJ01_MR1.MR.4.0002.dcm').data)).toBe(true);
  });

  it('ignores Range by default (200, full body)', async () => {
    const f = demo('1005', 'SUBJ01_MR1.MR.4.0003.dcm');
    const r = await get(emu, `${T1}/SUBJ01_MR1.MR.4.0003.dcm`, { headers: { range: 'bytes=0-9' } });
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(f.size);
    expect(r.headers['content-range']).toBeUndefined();
  });

  it('honours Range with rangeSupport (206, 416)', async () => {
    emu.setOptions({ rangeSupport: true });
    try {
      const f = demo('1005', 'SUBJ01_MR1.MR.4.0003.dcm');
      const r = await get(emu, `${T1}/SUBJ01_MR1.MR.4.0003.dcm`, { headers: { range: 'bytes=128-131' } });
      expect(r.status).toBe(206);
      expect(r.text).toBe('DICM');
      expect(r.headers['content-range']).toBe(`bytes 128-131/${f.size}`);
      const tail = await get(emu, `${T1}/SUBJ01_MR1.MR.4.0003.dcm`, { headers: { range: 'bytes=-10' } });
      expect(tail.body.equals(f.data.subarray(f.size - 10))).toBe(true);
      const bad = await get(emu, `${T1}/SUBJ01_MR1.MR.4.0003.dcm`, { headers: { range: `bytes=${f.size}-` } });
      expect(bad.status).toBe(416);
      expect(bad.headers['content-range']).toBe(`bytes */${f.size}`);
    } finally {
      emu.setOptions({ rangeSupport: false });
    }
  });
});

describe('awkward names and the path-decoding quirk', () => {
  it('serves every NOTES file by its percent-encoded path', async () => {
    for (const rel of ['notes with spaces.txt', 'hash#1.txt', '100%.txt', 'a+b.txt', 'ünïcode-日本.txt', 'sub dir/inner#file.txt']) {
      const enc = rel.split('/').map(encodeURIComponent).join('/');
      const r = await get(emu, `${NOTES}/${enc}`);
      expect(r.status, rel).toBe(200);
      expect(r.body.equals(demo('1003', rel).data)).toBe(true);
    }
  });

  it('matches like XNAT: raw "+" works alone, "+" next to %20 becomes a space', async () => {
    expect((await get(emu, `${NOTES}/a+b.txt`)).status).toBe(200);
    expect((await get(emu, `${NOTES}/a%2Bb.txt`)).status).toBe(200);
    // %20 anywhere makes XNAT URLDecode the whole path, turning a raw '+' into ' '
    expect((await get(emu, `${NOTES}/notes+with%20spaces.txt`)).status).toBe(200);
  });

  it('folder listing only matches decoded names when %20/%2B triggered decoding', async () => {
    // "sub%20dir/" is decoded (contains %20) → lists; a folder named with '#' would not be
    const r = await get(emu, `${NOTES}/sub%20dir/`);
    expect(r.json().ResultSet.Result).toHaveLength(1);
  });
});

describe('zip downloads', () => {
  it('streams a resource zip with the XNAT layout', async () => {
    const r = await get(emu, `/data/projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1/scans/4/resources/DICOM/files?format=zip`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/zip');
    expect(r.headers['content-disposition']).toBe('attachment; filename="SUBJ01_MR1.zip";');
    expect(r.headers['content-length']).toBeUndefined();
    const names = await unzipList(r.body);
    expect(names).toHaveLength(96);
    expect(names[0]).toBe('SUBJ01_MR1/scans/4-Ax_3D_T1/resources/DICOM/files/SUBJ01_MR1.MR.4.0001.dcm');
  });

  it('scans/ALL/files zips every scan with id-type folders; contents match', async () => {
    const r = await get(emu, '/data/experiments/XNAT_E00001/scans/ALL/files?format=zip');
    const names = await unzipList(r.body);
    expect(names).toHaveLength(3 + 96 + 1 + 24);
    expect(names).toContain('SUBJ01_MR1/scans/6-fMRI_rest__run_1_/resources/DICOM/files/SUBJ01_MR1.MR.6.0024.dcm');
    expect(names).toContain('SUBJ01_MR1/scans/4-Ax_3D_T1/resources/SNAPSHOTS/files/4_qc.png');
    const dir = await mkdtemp(path.join(work, 'x'));
    const zp = path.join(dir, 'a.zip');
    await writeFile(zp, r.body);
    await run('unzip', ['-q', zp, '-d', dir]);
    const png = await readFile(path.join(dir, 'SUBJ01_MR1/scans/4-Ax_3D_T1/resources/SNAPSHOTS/files/4_qc.png'));
    expect(png.equals(demo('1006', '4_qc.png').data)).toBe(true);
  });

  it('experiment and project level zips, subfolders kept, compression=0 stores', async () => {
    const exp = await unzipList((await get(emu, '/data/experiments/XNAT_E00001/files?format=zip&compression=0')).body);
    expect(exp).toContain('SUBJ01_MR1/resources/NOTES/files/sub dir/inner#file.txt');
    expect(exp).toContain('SUBJ01_MR1/resources/NOTES/files/ünïcode-日本.txt');
    const proj = await get(emu, '/data/projects/DEMO/resources/protocols/files?format=zip');
    expect(proj.headers['content-disposition']).toBe('attachment; filename="DEMO.zip";');
    expect(await unzipList(proj.body)).toEqual(['DEMO/resources/protocols/files/mri/protocol.pdf', 'DEMO/resources/protocols/files/README.txt']);
  });

  it('a stored zip (small members read ahead) carries the same bytes as a deflated one', async () => {
    const dir = await mkdtemp(path.join(work, 'z'));
    for (const level of ['0', '6']) {
      const zp = path.join(dir, `${level}.zip`);
      await writeFile(zp, (await get(emu, `/data/experiments/XNAT_E00001/scans/ALL/files?format=zip&compression=${level}`)).body);
      await run('unzip', ['-q', zp, '-d', path.join(dir, level)]);
    }
    const { stdout } = await run('diff', ['-r', path.join(dir, '0'), path.join(dir, '6')]);
    expect(stdout).toBe('');
    const { stdout: listing } = await run('unzip', ['-v', path.join(dir, '0.zip')]);
    expect(listing).toMatch(/Stored/);
    expect(listing).not.toMatch(/Defl/);
  });

  it('404 when there is nothing to zip', async () => {
    expect((await get(emu, '/data/experiments/XNAT_E00003/files?format=zip')).status).toBe(404);
  });
});

describe('bandwidth cap', () => {
  it('slows a response body to about the configured rate', async () => {
    emu.setOptions({ bandwidthBytesPerSec: 100_000 });
    try {
      const t0 = performance.now();
      const r = await get(emu, `${T1}/SUBJ01_MR1.MR.4.0010.dcm`); // ~34 KB
      const secs = (performance.now() - t0) / 1000;
      expect(r.body.length).toBe(demo('1005', 'SUBJ01_MR1.MR.4.0010.dcm').size);
      expect(secs).toBeGreaterThan(0.12); // 16 KiB burst, the rest at 100 kB/s
      expect(secs).toBeLessThan(2);
    } finally {
      emu.setOptions({ bandwidthBytesPerSec: 0 });
    }
  });
});
