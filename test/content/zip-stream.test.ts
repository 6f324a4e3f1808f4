import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { inflateRawSync } from 'node:zlib';
import { dir as tmpDir } from 'tmp-promise';
import { ZipStreamParser, type StreamedMember } from '../../src/content/zip-stream.js';
import { writeZip } from '../../src/emulator/zip.js';

function content(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let v = seed;
  for (let i = 0; i < n; i++) b[i] = (v = (v * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
}

const FILES: Record<string, Buffer> = {
  'MR1/scans/4-T1/resources/DICOM/files/a.dcm': content(70_000, 1),
  'MR1/scans/4-T1/resources/DICOM/files/b.dcm': Buffer.alloc(5000, 7),
  // data that contains the descriptor signature, and a signature followed by a plausible size
  'MR1/scans/4-T1/resources/DICOM/files/sub/sig.bin': Buffer.concat([Buffer.from('PK\x07\x08'), content(3000, 3), Buffer.from('PK\x07\x08\x00\x00\x00\x00'), content(100, 4)]),
  'MR1/scans/4-T1/resources/DICOM/files/empty.txt': Buffer.alloc(0),
};

function parse(zip: Buffer, chunk: number): { members: Map<string, Buffer>; parser: ZipStreamParser } {
  const members = new Map<string, Buffer>();
  const parser = new ZipStreamParser((m: StreamedMember) => {
    members.set(m.name, m.method === 8 ? inflateRawSync(m.raw) : m.raw);
    expect(members.get(m.name)!.length).toBe(m.uncompressedSize);
  }, 1 << 24);
  for (let i = 0; i < zip.length; i += chunk) parser.push(zip.subarray(i, i + chunk));
  return { members, parser };
}

async function emulatorZip(level: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  await writeZip(async (b) => void parts.push(Buffer.from(b)), Object.entries(FILES).map(([name, data]) => ({
    name, size: data.length, mtime: new Date(0), open: () => Readable.from([data]),
  })), level);
  return Buffer.concat(parts);
}

describe('ZipStreamParser', () => {
  it.each([[0, 'stored'], [6, 'deflated']])('reads members with data descriptors as they stream in (level %i, %s), whatever the chunking', async (level) => {
    const zip = await emulatorZip(level);
    for (const chunk of [1, 7, 4096, zip.length]) {
      const { members, parser } = parse(zip, chunk);
      expect(parser.failed).toBe(false);
      expect(parser.done).toBe(true);
      for (const [name, data] of Object.entries(FILES)) expect(members.get(name)?.equals(data), `${name} / ${chunk}`).toBe(true);
    }
  });

  it('reads members whose sizes are in the local header (Info-ZIP)', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      for (const [name, data] of Object.entries(FILES)) {
        await mkdir(join(tmp.path, 'src', name, '..'), { recursive: true });
        await writeFile(join(tmp.path, 'src', name), data);
      }
      await new Promise((res, rej) => execFile('zip', ['-qr', join(tmp.path, 'r.zip'), 'MR1'], { cwd: join(tmp.path, 'src') }, (e) => (e ? rej(e) : res(null))));
      const { members, parser } = parse(await readFile(join(tmp.path, 'r.zip')), 1000);
      expect(parser.failed).toBe(false);
      for (const [name, data] of Object.entries(FILES)) expect(members.get(name)?.equals(data), name).toBe(true);
    } finally {
      await tmp.cleanup();
    }
  });

  it('gives up (for the central-directory fallback) on what it cannot read', () => {
    const { parser } = parse(Buffer.from('this is no zip at all'), 5);
    expect(parser.failed).toBe(true);
  });
});
