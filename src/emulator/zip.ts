// Streaming zip writer (what XNAT sends for ?format=zip) and a small reader for extract=true.
// Writer: entries are written with data descriptors (flag bit 3) because CRCs are only known after
// streaming; zip64 records are added per entry / for the directory only when sizes or offsets need them.
import { once } from 'node:events';
import { open } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createDeflateRaw, createInflateRaw, crc32 } from 'node:zlib';

export interface ZipSource {
  name: string;
  size: number;
  mtime: Date;
  open(): Readable;
  /** The whole content in one go, for small stored members (cheaper than a stream). */
  readWhole?(): Promise<Buffer>;
}

/** Writes are gathered up to this size: one socket write per small member would dominate. */
const GATHER_BYTES = 64 * 1024;
/** Stored members up to this size are read whole, a few ahead of the one being written. */
const WHOLE_READ_BYTES = 1024 * 1024;
/**
 * Small members being read at once. One after another, each file costs several thread-pool
 * round trips (about 0.2 ms) where a Java server's blocking reads cost a few microseconds.
 */
const READ_AHEAD = 4;

const U32 = 0xffffffff;
// Above this an entry gets zip64 sizes (deflate may grow incompressible data a little).
const ZIP64_ENTRY_THRESHOLD = 0xf0000000;

function dosDateTime(d: Date): { time: number; date: number } {
  const year = Math.max(1980, d.getFullYear());
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | Math.floor(d.getSeconds() / 2),
    date: ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

interface CentralEntry {
  name: Buffer;
  crc: number;
  csize: number;
  usize: number;
  offset: number;
  method: number;
  time: number;
  date: number;
}

/**
 * Writes a zip of `entries` through `sink` (which applies backpressure). `level` 0 stores,
 * 1-9 deflates. Returns the byte count.
 */
export async function writeZip(
  sink: (b: Buffer) => Promise<void>,
  entries: readonly ZipSource[],
  level = 6,
): Promise<number> {
  let offset = 0;
  const central: CentralEntry[] = [];
  let gathered: Buffer[] = [];
  let gatheredBytes = 0;
  const flush = async (): Promise<void> => {
    if (gatheredBytes === 0) return;
    const b = gathered.length === 1 ? gathered[0]! : Buffer.concat(gathered, gatheredBytes);
    gathered = [];
    gatheredBytes = 0;
    await sink(b);
  };
  const write = async (b: Buffer): Promise<void> => {
    offset += b.length;
    gathered.push(b);
    gatheredBytes += b.length;
    if (gatheredBytes >= GATHER_BYTES) await flush();
  };

  const readWholly = (e: ZipSource): boolean => level === 0 && e.size <= WHOLE_READ_BYTES;
  const ahead = new Map<number, Promise<Buffer>>();
  for (let i = 0; i < entries.length; i++) {
    for (let j = i; j < Math.min(entries.length, i + READ_AHEAD); j++) {
      if (ahead.has(j) || !readWholly(entries[j]!)) continue;
      const e = entries[j]!;
      const read = e.readWhole ? e.readWhole() : readWhole(e.open());
      read.catch(() => undefined); // awaited in turn below
      ahead.set(j, read);
    }
    const e = entries[i]!;
    const name = Buffer.from(e.name, 'utf8');
    const method = level === 0 ? 0 : 8;
    const { time, date } = dosDateTime(e.mtime);
    const big = e.size >= ZIP64_ENTRY_THRESHOLD;
    const localOffset = offset;
    const extra = big ? zip64Extra([0, 0]) : Buffer.alloc(0);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(big ? 45 : 20, 4);
    lh.writeUInt16LE(0x0808, 6); // data descriptor + UTF-8 names
    lh.writeUInt16LE(method, 8);
    lh.writeUInt16LE(time, 10);
    lh.writeUInt16LE(date, 12);
    lh.writeUInt32LE(0, 14);
    lh.writeUInt32LE(big ? U32 : 0, 18);
    lh.writeUInt32LE(big ? U32 : 0, 22);
    lh.writeUInt16LE(name.length, 26);
    lh.writeUInt16LE(extra.length, 28);
    await write(Buffer.concat([lh, name, extra]));

    let crc = 0;
    let usize = 0;
    let csize = 0;
    const whole = ahead.get(i);
    if (whole) {
      ahead.delete(i);
      const data = await whole;
      crc = crc32(data);
      usize = csize = data.length;
      await write(data);
    } else if (method === 0) {
      for await (const chunk of e.open() as AsyncIterable<Buffer>) {
        crc = crc32(chunk, crc);
        usize += chunk.length;
        csize += chunk.length;
        await write(chunk);
      }
    } else {
      const deflate = createDeflateRaw({ level });
      const pump = (async () => {
        for await (const chunk of e.open() as AsyncIterable<Buffer>) {
          crc = crc32(chunk, crc);
          usize += chunk.length;
          if (!deflate.write(chunk)) await once(deflate, 'drain');
        }
        deflate.end();
      })();
      pump.catch((err) => deflate.destroy(err as Error));
      for await (const chunk of deflate as AsyncIterable<Buffer>) {
        csize += chunk.length;
        await write(chunk);
      }
      await pump;
    }

    const dd = Buffer.alloc(big ? 24 : 16);
    dd.writeUInt32LE(0x08074b50, 0);
    dd.writeUInt32LE(crc >>> 0, 4);
    if (big) {
      dd.writeBigUInt64LE(BigInt(csize), 8);
      dd.writeBigUInt64LE(BigInt(usize), 16);
    } else {
      dd.writeUInt32LE(csize, 8);
      dd.writeUInt32LE(usize, 12);
    }
    await write(dd);
    central.push({ name, crc: crc >>> 0, csize, usize, offset: localOffset, method, time, date });
  }

  const cdStart = offset;
  for (const c of central) {
    // Order in the extra field is fixed: usize, csize, offset (only those that overflow).
    const fields: number[] = [];
    if (c.usize >= U32) fields.push(c.usize);
    if (c.csize >= U32) fields.push(c.csize);
    if (c.offset >= U32) fields.push(c.offset);
    const extra = fields.length ? zip64Extra(fields) : Buffer.alloc(0);
    const h = Buffer.alloc(46);
    h.writeUInt32LE(0x02014b50, 0);
    h.writeUInt16LE((3 << 8) | 45, 4); // made by: unix, 4.5
    h.writeUInt16LE(fields.length ? 45 : 20, 6);
    h.writeUInt16LE(0x0808, 8);
    h.writeUInt16LE(c.method, 10);
    h.writeUInt16LE(c.time, 12);
    h.writeUInt16LE(c.date, 14);
    h.writeUInt32LE(c.crc, 16);
    h.writeUInt32LE(c.csize >= U32 ? U32 : c.csize, 20);
    h.writeUInt32LE(c.usize >= U32 ? U32 : c.usize, 24);
    h.writeUInt16LE(c.name.length, 28);
    h.writeUInt16LE(extra.length, 30);
    h.writeUInt16LE(0, 32);
    h.writeUInt16LE(0, 34);
    h.writeUInt16LE(0, 36);
    h.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    h.writeUInt32LE(c.offset >= U32 ? U32 : c.offset, 42);
    await write(Buffer.concat([h, c.name, extra]));
  }
  const cdSize = offset - cdStart;
  const count = central.length;
  const need64 = count >= 0xffff || cdStart >= U32 || cdSize >= U32;
  if (need64) {
    const z64Offset = offset;
    const r = Buffer.alloc(56);
    r.writeUInt32LE(0x06064b50, 0);
    r.writeBigUInt64LE(44n, 4);
    r.writeUInt16LE((3 << 8) | 45, 12);
    r.writeUInt16LE(45, 14);
    r.writeUInt32LE(0, 16);
    r.writeUInt32LE(0, 20);
    r.writeBigUInt64LE(BigInt(count), 24);
    r.writeBigUInt64LE(BigInt(count), 32);
    r.writeBigUInt64LE(BigInt(cdSize), 40);
    r.writeBigUInt64LE(BigInt(cdStart), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeUInt32LE(0, 4);
    loc.writeBigUInt64LE(BigInt(z64Offset), 8);
    loc.writeUInt32LE(1, 16);
    await write(Buffer.concat([r, loc]));
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(Math.min(count, 0xffff), 8);
  eocd.writeUInt16LE(Math.min(count, 0xffff), 10);
  eocd.writeUInt32LE(Math.min(cdSize, U32), 12);
  eocd.writeUInt32LE(Math.min(cdStart, U32), 16);
  await write(eocd);
  await flush();
  return offset;
}

async function readWhole(src: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of src as AsyncIterable<Buffer>) parts.push(chunk);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

function zip64Extra(values: number[]): Buffer {
  const b = Buffer.alloc(4 + values.length * 8);
  b.writeUInt16LE(0x0001, 0);
  b.writeUInt16LE(values.length * 8, 2);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), 4 + i * 8));
  return b;
}

// ---------------------------------------------------------------- reader (extract=true)

export interface ZipEntryInfo {
  name: string;
  isDirectory: boolean;
  open(): Readable;
}

/** Lists the entries of a zip file on disk (store and deflate only). */
export async function readZipEntries(path: string): Promise<ZipEntryInfo[]> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const tailLen = Math.min(size, 65557);
    const tail = Buffer.alloc(tailLen);
    await fh.read(tail, 0, tailLen, size - tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === 0x06054b50) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new Error('not a zip file');
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (eocd >= 20 && tail.readUInt32LE(eocd - 20) === 0x07064b50) {
      const recOffset = Number(tail.readBigUInt64LE(eocd - 20 + 8));
      const rec = Buffer.alloc(56);
      await fh.read(rec, 0, 56, recOffset);
      count = Number(rec.readBigUInt64LE(32));
      cdSize = Number(rec.readBigUInt64LE(40));
      cdOffset = Number(rec.readBigUInt64LE(48));
    }
    const cd = Buffer.alloc(cdSize);
    await fh.read(cd, 0, cdSize, cdOffset);
    const out: ZipEntryInfo[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (cd.readUInt32LE(p) !== 0x02014b50) throw new Error('bad central directory');
      const method = cd.readUInt16LE(p + 10);
      let csize = cd.readUInt32LE(p + 20);
      let usize = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let lhOffset = cd.readUInt32LE(p + 42);
      const name = cd.subarray(p + 46, p + 46 + nameLen).toString('utf8');
      let e = p + 46 + nameLen;
      const eEnd = e + extraLen;
      while (e + 4 <= eEnd) {
        const id = cd.readUInt16LE(e);
        const len = cd.readUInt16LE(e + 2);
        if (id === 1) {
          let q = e + 4;
          if (usize === U32) (usize = Number(cd.readBigUInt64LE(q))), (q += 8);
          if (csize === U32) (csize = Number(cd.readBigUInt64LE(q))), (q += 8);
          if (lhOffset === U32) lhOffset = Number(cd.readBigUInt64LE(q));
        }
        e += 4 + len;
      }
      p = eEnd + commentLen;
      const lh = Buffer.alloc(30);
      await fh.read(lh, 0, 30, lhOffset);
      const dataStart = lhOffset + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
      if (method !== 0 && method !== 8) throw new Error(`unsupported zip method ${method}`);
      out.push({
        name,
        isDirectory: name.endsWith('/'),
        open: () => {
          const raw = csize === 0 ? Readable.from([]) : createReadStream(path, { start: dataStart, end: dataStart + csize - 1 });
          return method === 8 ? raw.pipe(createInflateRaw()) : raw;
        },
      });
    }
    return out;
  } finally {
    await fh.close();
  }
}
