// Members of a zip as it streams in, so files can be handed out before the whole zip arrived.
// XNAT builds zips on the fly with data descriptors (sizes follow the data), so a member's end is
// found by its descriptor: the signature PK\7\8 followed by a compressed size equal to the
// distance from the data's start. Anything this parser does not understand (encryption, a
// descriptor without signature, an oversized member) makes it stop; the caller then reads the
// rest from the complete zip's central directory.
import { standalone } from './buffers.js';

const LOCAL = 0x04034b50;
const CENTRAL = 0x02014b50;
const END = 0x06054b50;
const END64 = 0x06064b50;
const DESCRIPTOR = Buffer.from([0x50, 0x4b, 0x07, 0x08]);

export interface StreamedMember {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  /** The member's compressed bytes (a copy, owned by the receiver). */
  raw: Buffer;
  uncompressedSize: number;
}

export class ZipStreamParser {
  /** Gave up: the caller must fall back to the central directory. */
  failed = false;
  /** Reached the central directory: every member has been seen. */
  done = false;
  private store = Buffer.alloc(0);
  private start = 0;
  private end = 0;
  /** Where the descriptor search resumes for the member being read. */
  private scanFrom = 0;

  constructor(
    private readonly onMember: (m: StreamedMember) => void,
    /** A member larger than this is not held for streaming. */
    private readonly maxMemberBytes: number,
  ) {}

  push(chunk: Buffer): void {
    if (this.failed || this.done) return;
    this.append(chunk);
    try {
      this.parse();
    } catch {
      this.failed = true;
    }
  }

  private get length(): number {
    return this.end - this.start;
  }

  /** Append with geometric growth, so a member arriving in many chunks is copied O(n) times. */
  private append(chunk: Buffer): void {
    if (this.end + chunk.length > this.store.length) {
      const needed = this.length + chunk.length;
      if (needed <= this.store.length) {
        // Room once the consumed bytes are dropped: move the rest to the front.
        this.store.copy(this.store, 0, this.start, this.end);
      } else {
        const grown = Buffer.allocUnsafe(Math.max(needed * 2, 64 * 1024));
        this.store.copy(grown, 0, this.start, this.end);
        this.store = grown;
      }
      this.end = this.length;
      this.start = 0;
    }
    chunk.copy(this.store, this.end);
    this.end += chunk.length;
  }

  private parse(): void {
    for (;;) {
      const b = this.store;
      const s = this.start;
      if (this.length < 4) return;
      const sig = b.readUInt32LE(s);
      if (sig === CENTRAL || sig === END || sig === END64) {
        this.done = true;
        return;
      }
      if (sig !== LOCAL) throw new Error('not a local file header');
      if (this.length < 30) return;
      const flags = b.readUInt16LE(s + 6);
      const method = b.readUInt16LE(s + 8);
      let csize = b.readUInt32LE(s + 18);
      let usize = b.readUInt32LE(s + 22);
      const nameLen = b.readUInt16LE(s + 26);
      const extraLen = b.readUInt16LE(s + 28);
      const dataStart = 30 + nameLen + extraLen;
      if (this.length < dataStart) return;
      if (flags & 1) throw new Error('encrypted member');
      const name = b.toString(flags & 0x800 ? 'utf8' : 'latin1', s + 30, s + 30 + nameLen);
      const zip64 = csize === 0xffffffff || usize === 0xffffffff;
      if (zip64) [usize, csize] = zip64Sizes(b.subarray(s + 30 + nameLen, s + dataStart), usize, csize);

      let dataEnd: number;
      let next: number;
      if ((flags & 8) === 0) {
        if (csize > this.maxMemberBytes) throw new Error('member too large to stream');
        if (this.length < dataStart + csize) return;
        dataEnd = dataStart + csize;
        next = dataEnd;
      } else {
        const found = this.findDescriptor(dataStart);
        if (!found) {
          if (this.length - dataStart > this.maxMemberBytes) throw new Error('member too large to stream');
          return;
        }
        [dataEnd, next, usize] = found;
      }
      this.onMember({ name, method, raw: standalone(b.subarray(s + dataStart, s + dataEnd)), uncompressedSize: usize });
      this.start += next;
      this.scanFrom = 0;
    }
  }

  /** [data end, next header, uncompressed size], relative to start; null while not arrived. */
  private findDescriptor(dataStart: number): [number, number, number] | null {
    const b = this.store;
    let p = Math.max(this.start + dataStart, this.start + this.scanFrom);
    for (;;) {
      p = b.indexOf(DESCRIPTOR, p);
      if (p < 0 || p >= this.end) {
        this.scanFrom = Math.max(dataStart, this.length - 3);
        return null;
      }
      if (this.end < p + 24) {
        this.scanFrom = p - this.start; // not all of it yet: look here again
        return null;
      }
      const distance = p - (this.start + dataStart);
      if (b.readUInt32LE(p + 8) === distance) return [distance + dataStart, p - this.start + 16, b.readUInt32LE(p + 12)];
      if (Number(b.readBigUInt64LE(p + 8)) === distance) return [distance + dataStart, p - this.start + 24, Number(b.readBigUInt64LE(p + 16))];
      p += 1; // the signature's bytes occurred inside the data
    }
  }
}

/** Sizes from a zip64 extra field (0x0001): original size first, each only if 0xFFFFFFFF above. */
function zip64Sizes(extra: Buffer, usize: number, csize: number): [number, number] {
  for (let i = 0; i + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(i);
    const len = extra.readUInt16LE(i + 2);
    if (id === 0x0001) {
      let q = i + 4;
      if (usize === 0xffffffff && q + 8 <= i + 4 + len) {
        usize = Number(extra.readBigUInt64LE(q));
        q += 8;
      }
      if (csize === 0xffffffff && q + 8 <= i + 4 + len) csize = Number(extra.readBigUInt64LE(q));
      break;
    }
    i += 4 + len;
  }
  return [usize, csize];
}
