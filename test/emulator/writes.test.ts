import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { call, get, multipart, rows } from './helpers.js';

const run = promisify(execFile);
let emu: RunningEmulator;
let work: string;
beforeAll(async () => {
  emu = await startEmulator();
  work = await mkdtemp(path.join(tmpdir(), 'xnatfs-emu-writes-'));
});
afterAll(async () => {
  await emu?.close();
  await rm(work, { recursive: true, force: true });
});

const EXP = '/data/projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1';
const resourceRow = async (owner: string, label: string) => (await rows(emu, `${owner}/resources`)).find((r) => r.label === label);

describe('resource creation and deletion', () => {
  it('PUT creates (200, empty), again is 409, and the resource is listed', async () => {
    const r = await call(emu, 'PUT', `${EXP}/resources/RESULTS?format=NIFTI&content=DERIVED&tags=a,b`);
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(0);
    const row = await resourceRow(EXP, 'RESULTS');
    expect(row).toMatchObject({ format: 'NIFTI', content: 'DERIVED', tags: 'a,b', file_count: '0', file_size: '0' });
    expect(Number(row!.xnat_abstractresource_id)).toBeGreaterThan(1011);
    const again = await call(emu, 'PUT', `${EXP}/resources/RESULTS`);
    expect(again.status).toBe(409);
    expect(again.text).toContain('<h3>Specified resource already exists.</h3>');
  });

  it('DELETE removes it with its files; unknown labels are a 200 no-op', async () => {
    await call(emu, 'PUT', `${EXP}/resources/TMP/files/x.txt?inbody=true`, { body: 'x' });
    const p = emu.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'TMP', 'x.txt');
    expect(p).not.toBeNull();
    expect((await call(emu, 'DELETE', `${EXP}/resources/TMP`)).status).toBe(200);
    expect(await resourceRow(EXP, 'TMP')).toBeUndefined();
    expect(emu.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'TMP', 'x.txt')).toBeNull();
    await expect(readFile(p!)).rejects.toThrow();
    expect((await call(emu, 'DELETE', `${EXP}/resources/NEVER_THERE`)).status).toBe(200);
  });

  it('404 for an unknown parent, 403 without edit rights, 404 for an unreadable project', async () => {
    expect((await call(emu, 'PUT', '/data/projects/DEMO/subjects/SUBJ01/experiments/NOPE/resources/X')).status).toBe(404);
    expect((await call(emu, 'PUT', '/data/projects/OPEN/resources/X', { user: 'reader:reader' })).status).toBe(403);
    expect((await call(emu, 'PUT', '/data/projects/OPEN/subjects/OPEN01/resources/X/files/a.txt?inbody=true', { user: 'reader:reader', body: 'a' })).status).toBe(403);
    expect((await call(emu, 'DELETE', '/data/experiments/XNAT_E00004/scans/3/resources/DICOM/files/OPEN01_MR1.MR.3.0001.dcm', { user: 'reader:reader' })).status).toBe(403);
    expect((await call(emu, 'PUT', '/data/projects/PRIVATE/resources/X', { user: 'reader:reader' })).status).toBe(404);
  });
});

describe('uploads', () => {
  it('multipart with any field name, into a subfolder, auto-creating the resource', async () => {
    const mp = multipart([{ field: 'whatever_field', filename: 'ignored-name.bin', data: Buffer.from('hello multipart') }]);
    // A resource of its own: the other uploads here add files to UPLOADS, in any order.
    const r = await call(emu, 'PUT', `${EXP}/resources/MULTIPART/files/sub/folder/a.bin?format=BIN`, { headers: { 'content-type': mp.contentType }, body: mp.body });
    expect(r.status).toBe(200);
    expect(r.text).toBe('');
    const files = await rows(emu, `${EXP}/resources/MULTIPART/files`);
    expect(files).toEqual([expect.objectContaining({ Name: 'a.bin', Size: '15', digest: expect.stringMatching(/^[0-9a-f]{32}$/), file_format: 'BIN' })]);
    expect(files[0]!.URI.endsWith('/files/sub/folder/a.bin')).toBe(true);
    const { createHash } = await import('node:crypto');
    expect(files[0]!.digest).toBe(createHash('md5').update('hello multipart').digest('hex'));
    expect((await get(emu, `${EXP}/resources/MULTIPART/files/sub/folder/a.bin`)).text).toBe('hello multipart');
    const res = await resourceRow(EXP, 'MULTIPART');
    expect(res).toMatchObject({ file_count: '1', file_size: '15', format: 'BIN' });
  });

  it('multipart without a URL path uses the part file name; form fields are ignored', async () => {
    const mp = multipart([
      { field: 'note', data: 'just a field' },
      { field: 'file', filename: 'C:\\Users\\me\\scan.dcm', data: Buffer.alloc(1000, 7) },
    ]);
    const r = await call(emu, 'POST', `${EXP}/resources/UPLOADS/files`, { headers: { 'content-type': mp.contentType }, body: mp.body });
    expect(r.status).toBe(200);
    const got = await get(emu, `${EXP}/resources/UPLOADS/files/scan.dcm`);
    expect(got.body.equals(Buffer.alloc(1000, 7))).toBe(true);
  });

  it('raw bodies with inbody=true or an upload content type', async () => {
    expect((await call(emu, 'PUT', `${EXP}/resources/UPLOADS/files/raw1.txt?inbody=true`, { body: 'one' })).status).toBe(200);
    expect((await call(emu, 'PUT', `${EXP}/resources/UPLOADS/files/raw2.txt`, { headers: { 'content-type': 'application/octet-stream' }, body: 'two' })).status).toBe(200);
    expect((await get(emu, `${EXP}/resources/UPLOADS/files/raw1.txt`)).text).toBe('one');
    expect((await get(emu, `${EXP}/resources/UPLOADS/files/raw2.txt`)).text).toBe('two');
  });

  it('an existing file without overwrite: 200 {"duplicates":[…]} as text/html, old bytes kept; overwrite=true replaces', async () => {
    // Its own file, not raw1.txt of the test above: the tests of this file may run in any order.
    expect((await call(emu, 'PUT', `${EXP}/resources/UPLOADS/files/dup.txt?inbody=true`, { body: 'one' })).status).toBe(200);
    const dup = await call(emu, 'PUT', `${EXP}/resources/UPLOADS/files/dup.txt?inbody=true`, { body: 'changed' });
    expect(dup.status).toBe(200);
    expect(dup.headers['content-type']).toMatch(/^text\/html/);
    expect(dup.text).toBe('{"duplicates":["dup.txt"]}');
    expect((await get(emu, `${EXP}/resources/UPLOADS/files/dup.txt`)).text).toBe('one');
    const ow = await call(emu, 'PUT', `${EXP}/resources/UPLOADS/files/dup.txt?inbody=true&overwrite=true`, { body: 'changed' });
    expect(ow.status).toBe(200);
    expect(ow.text).toBe('');
    expect((await get(emu, `${EXP}/resources/UPLOADS/files/dup.txt`)).text).toBe('changed');
    const listed = (await rows(emu, `${EXP}/resources/UPLOADS/files`)).find((f) => f.Name === 'dup.txt');
    expect(listed!.Size).toBe('7');
  });

  it('empty bodies are 400 with XNAT\'s message; multipart+inbody is 406', async () => {
    const empty = await call(emu, 'PUT', `${EXP}/resources/UPLOADS/files/empty.txt`);
    expect(empty.status).toBe(400);
    expect(empty.text).toContain("You tried to PUT to this service, but didn't provide any data (found request entity size of 0).");
    const mp = multipart([{ field: 'f', filename: 'x.txt', data: 'x' }]);
    const both = await call(emu, 'PUT', `${EXP}/resources/UPLOADS/files/x.txt?inbody=true`, { headers: { 'content-type': mp.contentType }, body: mp.body });
    expect(both.status).toBe(406);
  });

  it('extract=true unpacks a zip into the resource root and reports duplicates', async () => {
    const src = path.join(work, 'zsrc');
    await mkdir(path.join(src, 'inner'), { recursive: true });
    await writeFile(path.join(src, 'top.txt'), 'top');
    await writeFile(path.join(src, 'inner', 'deep.txt'), 'deep');
    const zp = path.join(work, 'bundle.zip');
    await run('zip', ['-qr', zp, '.'], { cwd: src });
    const mp = multipart([{ field: 'file', filename: 'bundle.zip', data: await readFile(zp) }]);
    const r = await call(emu, 'POST', `${EXP}/resources/EXTRACTED/files/ignored/folder?extract=true`, { headers: { 'content-type': mp.contentType }, body: mp.body });
    expect(r.status).toBe(200);
    const names = (await rows(emu, `${EXP}/resources/EXTRACTED/files`)).map((f) => f.URI.replace(/^.*\/files\//, '')).sort();
    expect(names).toEqual(['inner/deep.txt', 'top.txt']);
    expect((await get(emu, `${EXP}/resources/EXTRACTED/files/inner/deep.txt`)).text).toBe('deep');
    const again = await call(emu, 'POST', `${EXP}/resources/EXTRACTED/files?extract=true`, { headers: { 'content-type': mp.contentType }, body: mp.body });
    expect(JSON.parse(again.text).duplicates.sort()).toEqual(['inner/deep.txt', 'top.txt']);
  });

  it('streams a large upload to disk', async () => {
    const big = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    const r = await call(emu, 'PUT', `${EXP}/resources/UPLOADS/files/big.bin?inbody=true`, { body: big });
    expect(r.status).toBe(200);
    const p = emu.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'UPLOADS', 'big.bin');
    expect((await readFile(p!)).equals(big)).toBe(true);
  });

  it('a client that aborts mid-upload leaves no file and no temp file behind', async () => {
    const { connect } = await import('node:net');
    const { readdir } = await import('node:fs/promises');
    const u = new URL(emu.url);
    const sock = connect(Number(u.port), u.hostname);
    await new Promise((r) => sock.once('connect', r));
    sock.write(
      `PUT ${EXP}/resources/ABORT/files/part.bin?inbody=true HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ${Buffer.from('demo:demo').toString('base64')}\r\n` +
        'Content-Length: 1000000\r\n\r\n' + 'x'.repeat(5000),
    );
    await new Promise((r) => setTimeout(r, 100));
    sock.destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect(emu.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'ABORT', 'part.bin')).toBeNull();
    expect(await readdir(path.join(emu.dataDir, '.uploads'))).toEqual([]);
    expect((await get(emu, '/data/projects')).status).toBe(200);
  });

  it('a URL path with %20 is decoded, one with %23 is stored literally (XNAT FileList quirk)', async () => {
    expect((await call(emu, 'PUT', `${EXP}/resources/QUIRK/files/with%20space.txt?inbody=true`, { body: 's' })).status).toBe(200);
    expect((await call(emu, 'PUT', `${EXP}/resources/QUIRK/files/hash%231.txt?inbody=true`, { body: 'h' })).status).toBe(200);
    const names = (await rows(emu, `${EXP}/resources/QUIRK/files`)).map((f) => f.Name);
    expect(names).toEqual(['with space.txt', 'hash%231.txt']);
  });
});

describe('file deletes', () => {
  it('deletes a file, a folder, and 404s on no match; counts follow', async () => {
    const base = `${EXP}/resources/DEL/files`;
    for (const p of ['keep.txt', 'dir/a.txt', 'dir/b.txt', 'dir/deeper/c.txt']) {
      expect((await call(emu, 'PUT', `${base}/${p}?inbody=true`, { body: p })).status).toBe(200);
    }
    expect((await call(emu, 'DELETE', `${base}/keep.txt`)).status).toBe(200);
    expect((await get(emu, `${base}/keep.txt`)).status).toBe(404);
    expect((await call(emu, 'DELETE', `${base}/dir/`)).status).toBe(200);
    expect(await rows(emu, base)).toEqual([]);
    expect(await resourceRow(EXP, 'DEL')).toMatchObject({ file_count: '0', file_size: '0' });
    const none = await call(emu, 'DELETE', `${base}/nothing.txt`);
    expect(none.status).toBe(404);
    expect(none.text).toContain('<h3>No matched files</h3>');
  });

  it('matches by prefix like CatalogUtils.findCatEntriesWithinPath', async () => {
    const base = `${EXP}/resources/PREFIX/files`;
    for (const p of ['scan.dcm', 'scan.dcm.bak']) await call(emu, 'PUT', `${base}/${p}?inbody=true`, { body: p });
    expect((await call(emu, 'DELETE', `${base}/scan.dcm`)).status).toBe(200);
    expect(await rows(emu, base)).toEqual([]);
  });

  it('names needing escapes other than %20/%2B cannot be deleted by URL (real XNAT behaviour)', async () => {
    const notes = '/data/experiments/XNAT_E00001/resources/NOTES/files';
    expect((await call(emu, 'DELETE', `${notes}/hash%231.txt`)).status).toBe(404);
    expect((await call(emu, 'DELETE', `${notes}/notes%20with%20spaces.txt`)).status).toBe(200);
    expect((await get(emu, `${notes}/hash%231.txt`)).status).toBe(200);
  });
});
