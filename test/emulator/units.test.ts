import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { javaUrlDecode } from '../../src/emulator/http.js';
import { parseMultipart } from '../../src/emulator/multipart.js';
import { javaHashMapOrder, javaHashtableOrder, renderTable } from '../../src/emulator/resultset.js';
import { readZipEntries, writeZip } from '../../src/emulator/zip.js';
import { xnatFilePath } from '../../src/emulator/files.js';

const run = promisify(execFile);
let work: string;
beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'xnatfs-emu-units-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('resultset', () => {
  it('reproduces java.util.HashMap and Hashtable iteration order', () => {
    expect(javaHashMapOrder(['ID', 'secondary_ID', 'name', 'description', 'pi_firstname', 'pi_lastname', 'URI'])).toEqual([
      'pi_firstname',
      'secondary_ID',
      'pi_lastname',
      'name',
      'description',
      'ID',
      'URI',
    ]);
    expect(javaHashtableOrder(['title', 'totalRecords'])).toHaveLength(2);
  });

  it('writes every cell as a string, meta after ", "', () => {
    const { body } = renderTable({ columns: ['a'], rows: [{ a: '1' }], meta: [['totalRecords', '1']] }, 'json');
    expect(body).toBe('{"ResultSet":{"Result":[{"a":"1"}], "totalRecords": "1"}}');
    const csv = renderTable({ columns: ['a', 'b'], rows: [{ a: 'x,y', b: 'say "hi"' }], meta: [] }, 'csv');
    expect(csv.body).toBe('a,b\n"x,y","say ""hi"""\n');
  });
});

describe('path decoding', () => {
  it('decodes only when %20 or %2B is present, like FileList', () => {
    expect(xnatFilePath('a%20b+c')).toBe('a b c');
    expect(xnatFilePath('a%2Bb')).toBe('a+b');
    expect(xnatFilePath('hash%231.txt')).toBe('hash%231.txt');
    expect(xnatFilePath('/x%2bb')).toBe('x%2bb'); // lower-case %2b does not trigger it
    expect(javaUrlDecode('%C3%BC+x')).toBe('ü x');
    expect(() => javaUrlDecode('100%.txt')).toThrow();
  });
});

describe('multipart parser', () => {
  it('handles boundaries split across every chunk position', async () => {
    const boundary = 'XyZ123';
    const payload = Buffer.from('line1\r\n--XyZ12 not a boundary\r\n\r\nend');
    const body = Buffer.concat([
      Buffer.from(`preamble\r\n--${boundary}\r\nContent-Disposition: form-data; name="meta"\r\n\r\nvalue\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="anything"; filename="f.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      payload,
      Buffer.from(`\r\n--${boundary}--\r\nepilogue`),
    ]);
    for (const size of [1, 2, 3, 7, 13, 64, body.length]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < body.length; i += size) chunks.push(body.subarray(i, i + size));
      const got: Buffer[] = [];
      let name = '';
      const { fields, parts } = await parseMultipart(Readable.from(chunks), boundary, async (info) => {
        if (!info.filename) return null;
        name = `${info.fieldName}:${info.filename}`;
        return new Writable({
          write(c: Buffer, _e, cb) {
            got.push(c);
            cb();
          },
        });
      });
      expect(parts).toBe(2);
      expect(fields).toEqual({ meta: 'value' });
      expect(name).toBe('anything:f.bin');
      expect(Buffer.concat(got).equals(payload), `chunk size ${size}`).toBe(true);
    }
  });

  it('rejects a truncated body', async () => {
    await expect(parseMultipart(Readable.from([Buffer.from('--b\r\nContent-Disposition: form-data; name="x"; filename="y"\r\n\r\nabc')]), 'b', async () => new PassThrough().resume())).rejects.toThrow();
  });
});

describe('zip writer and reader', () => {
  it('writes deflated and stored entries that unzip verifies, and reads them back', async () => {
    const data = Buffer.alloc(200_000, 'abc');
    const mtime = new Date('2024-01-15T10:00:00Z');
    for (const level of [0, 6]) {
      const chunks: Buffer[] = [];
      await writeZip(async (b) => void chunks.push(Buffer.from(b)), [
        { name: 'dir/a.txt', size: data.length, mtime, open: () => Readable.from([data]) },
        { name: 'ünï/empty', size: 0, mtime, open: () => Readable.from([]) },
      ], level);
      const p = path.join(work, `t${level}.zip`);
      await writeFile(p, Buffer.concat(chunks));
      await run('unzip', ['-tq', p]);
      const entries = await readZipEntries(p);
      expect(entries.map((e) => e.name)).toEqual(['dir/a.txt', 'ünï/empty']);
      const back: Buffer[] = [];
      for await (const c of entries[0]!.open()) back.push(c as Buffer);
      expect(Buffer.concat(back).equals(data)).toBe(true);
    }
  });

  it('switches to zip64 end records past 65535 entries', async () => {
    const n = 66_000;
    const mtime = new Date('2024-01-15T10:00:00Z');
    const chunks: Buffer[] = [];
    function* entries() {
      for (let i = 0; i < n; i++) yield { name: `f${i}`, size: 1, mtime, open: () => Readable.from([Buffer.from('x')]) };
    }
    await writeZip(async (b) => void chunks.push(Buffer.from(b)), [...entries()], 0);
    const p = path.join(work, 'many.zip');
    await writeFile(p, Buffer.concat(chunks));
    const { stdout } = await run('unzip', ['-Z1', p], { maxBuffer: 64 * 1024 * 1024 });
    expect(stdout.trim().split('\n')).toHaveLength(n);
    expect((await readZipEntries(p)).length).toBe(n);
    expect((await readFile(p)).includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(true);
  }, 60_000);
});
