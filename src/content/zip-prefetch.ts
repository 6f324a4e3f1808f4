// Prefetch of many small files in one request: XNAT's `…/resources/R/files?format=zip`.
// XNAT builds these zips on the fly and streams them (no Content-Length, data descriptors), so
// members are handed out as the zip streams in (zip-stream.ts); the zip is also kept whole (in memory,
// or in a temporary file when large) so that its central directory can serve what streaming could not (yauzl: zip64,
// data descriptors and size validation that a hand-written parser would have to repeat). Each
// member that matches a wanted file (same path, same listed size) is handed to that file's
// download as its first source; the download still checks the MD5 digest, and any file the zip
// does not deliver falls back to its own GET.
import { createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { inflateRaw as inflateRawCb, inflateRawSync } from 'node:zlib';
import createDebug from 'debug';
import yauzl from 'yauzl';
import { ZipStreamParser } from './zip-stream.js';

const log = createDebug('xnatfs:zip');

/** Members unpacked at once. */
const MEMBERS_IN_FLIGHT = 16;
/** Compressed members up to this size are inflated on the main thread. */
const INLINE_INFLATE_BYTES = 64 * 1024;
/** Members up to this size are handed out while the zip streams in. */
const STREAMED_MEMBER_BYTES = 32 * 1024 * 1024;
/** Zips up to this size are held in memory rather than spooled to disk. */
const IN_MEMORY_ZIP_BYTES = 64 * 1024 * 1024;

/**
 * Bytes of all zips being received held in memory together. Each folder a program reads is
 * prefetched as its own zip, so the bound per zip alone let six parallel `cp -r` of 45 MB scans
 * hold 270 MB (the mount peaked at 670-770 MB RSS); past this total, a zip is spooled to disk.
 */
let zipBytesHeld = 0;

/** Bytes of zips held in memory now, all zips together. */
export function zipBytesInMemory(): number {
  return zipBytesHeld;
}

export interface WantedMember {
  size: number;
  /**
   * The member's bytes: whole when the zip is in memory, a stream when it was spooled to disk.
   * Called from within the zip's data handling for most members: it must return quickly.
   */
  resolve(member: Buffer | Readable): void;
  reject(err: Error): void;
}

/**
 * The path inside the resource of a member of XNAT's zip: what follows the first
 * `resources/<label>/files/` (e.g. `MR1/scans/4-T1/resources/DICOM/files/sub/x.dcm` → `sub/x.dcm`).
 */
export function memberPath(entryName: string): string | null {
  const m = /^(?:[^]*?\/)?resources\/[^/]+\/files\/(.+)$/.exec(entryName);
  return m ? m[1]! : null;
}

/**
 * Receive the resource's zip (`response`: the request, already sent) and feed wanted members to
 * their waiters, a bounded number at a time (a member's stream is consumed by its download, so
 * memory stays bounded). Kept whole in memory, or in `tmpPath` once large. Every waiter is
 * settled when this returns or throws: unmatched ones are rejected.
 */
export async function fetchZipMembers(
  response: Promise<Readable>,
  resource: string,
  wanted: Map<string, WantedMember>,
  tmpPath: string,
  options: {
    inMemoryBytes?: number;
    /** Bound on the bytes of all zips held in memory together (default IN_MEMORY_ZIP_BYTES). */
    inMemoryTotalBytes?: number;
    /** Awaited after each chunk: the receiver's backpressure (e.g. members not yet written). */
    pace?: () => Promise<void> | void;
    /** Members larger than this are left to the central directory (tests make it small). */
    streamedMemberBytes?: number;
  } = {},
): Promise<void> {
  const pending = new Map(wanted);
  const held = { bytes: 0 };
  try {
    const body = await response;
    // Members are handed out as they stream in; the complete zip is kept as well, in case the
    // streaming parse gives up (then the central directory serves what is still pending).
    const decoding: Array<Promise<void>> = [];
    const parser = new ZipStreamParser((m) => {
      const path = memberPath(m.name);
      const w = path !== null ? pending.get(path) : undefined;
      if (!w || w.size !== m.uncompressedSize || m.name.endsWith('/')) return;
      pending.delete(path!);
      // Stored and small deflated members are handed over within this call: a promise per
      // member cost more main thread than the member itself while thousands stream in.
      if (m.method === 0 || (m.method === 8 && m.raw.length <= INLINE_INFLATE_BYTES)) {
        let data: Buffer;
        try {
          data = decodeNow(m.name, m.method, m.raw, m.uncompressedSize, true);
        } catch (err) {
          w.reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        w.resolve(data);
        return;
      }
      decoding.push(
        decode(m.name, m.method, m.raw, m.uncompressedSize, true).then(
          (data) => w.resolve(data),
          (err: unknown) => w.reject(err instanceof Error ? err : new Error(String(err))),
        ),
      );
    }, options.streamedMemberBytes ?? STREAMED_MEMBER_BYTES);
    const inMemory = { each: options.inMemoryBytes ?? IN_MEMORY_ZIP_BYTES, total: options.inMemoryTotalBytes ?? IN_MEMORY_ZIP_BYTES, held };
    const { zip, buffer } = await receiveZip(body, tmpPath, inMemory, (chunk) => parser.push(chunk), options.pace);
    await Promise.all(decoding);
    log('zip of %s received (%s); %d members streamed%s', resource, buffer ? 'in memory' : 'on disk', wanted.size - pending.size, parser.failed ? ', streaming gave up' : '');
    if (pending.size === 0 || parser.done) {
      zip.close();
      return; // all delivered, or the rest is not in the zip
    }
    try {
      await new Promise<void>((resolve, reject) => {
        // Members are unpacked several at a time: one after another, the per-member round trips
        // to the thread pool (read, inflate) dominate for thousands of small files.
        let open = 0;
        let ended = false;
        let waitingForSlot = false;
        const next = (): void => {
          if (ended) return;
          if (open >= MEMBERS_IN_FLIGHT) {
            waitingForSlot = true;
            return;
          }
          zip.readEntry();
        };
        const memberDone = (): void => {
          open--;
          if (ended && open === 0) resolve();
          if (waitingForSlot) {
            waitingForSlot = false;
            next();
          }
        };
        zip.on('error', reject);
        zip.on('end', () => {
          ended = true;
          if (open === 0) resolve();
        });
        zip.on('entry', (entry: yauzl.Entry) => {
          const path = memberPath(entry.fileName);
          const w = path !== null ? pending.get(path) : undefined;
          if (!w || w.size !== entry.uncompressedSize || entry.fileName.endsWith('/')) {
            next();
            return;
          }
          pending.delete(path!);
          open++;
          if (buffer && entry.compressionMethod <= 8 && !entry.isEncrypted()) {
            // In memory: slice and inflate the member directly, no stream per member.
            memberBytes(buffer, entry).then(
              (data) => {
                w.resolve(data);
                memberDone();
              },
              (err: unknown) => {
                w.reject(err instanceof Error ? err : new Error(String(err)));
                memberDone();
              },
            );
            next();
            return;
          }
          zip.openReadStream(entry, (err, stream) => {
            if (err) {
              w.reject(err);
              memberDone();
              return;
            }
            let settled = false;
            const finish = (): void => {
              if (settled) return;
              settled = true;
              memberDone();
            };
            stream.once('end', finish);
            stream.once('close', finish);
            stream.once('error', finish);
            w.resolve(stream as Readable);
          });
          next();
        });
        next();
      });
    } finally {
      zip.close();
    }
    log('zip of %s delivered %d of %d files', resource, wanted.size - pending.size, wanted.size);
  } finally {
    zipBytesHeld -= held.bytes; // the zip's buffer is let go with this call
    held.bytes = 0;
    for (const w of pending.values()) w.reject(new Error('not delivered by the zip'));
    await unlink(tmpPath).catch(() => undefined);
  }
}

const inflateRaw = promisify(inflateRawCb);

const ZIP_OPTIONS = { lazyEntries: true, autoClose: false, validateEntrySizes: true };

/**
 * The zip in memory while it is small (members are then unpacked without a trip to the disk
 * each), spooled to `tmpPath` once it grows past `inMemory.each`, or all zips held in memory
 * past `inMemory.total`. `inMemory.held` counts this zip's bytes in zipBytesHeld.
 */
async function receiveZip(
  body: Readable,
  tmpPath: string,
  inMemory: { each: number; total: number; held: { bytes: number } },
  onChunk: (chunk: Buffer) => void,
  pace?: () => Promise<void> | void,
): Promise<{ zip: yauzl.ZipFile; buffer: Buffer | null }> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let file: WriteStream | null = null;
  let writeError: Error | null = null;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      // Members are handed out as they arrive whether the zip is kept in memory or on disk.
      onChunk(chunk);
      await pace?.();
      if (file) {
        if (writeError) throw writeError;
        if (!file.write(chunk)) await drainedOrClosed(file);
        continue;
      }
      chunks.push(chunk);
      bytes += chunk.length;
      inMemory.held.bytes += chunk.length;
      zipBytesHeld += chunk.length;
      if (bytes > inMemory.each || zipBytesHeld > inMemory.total) {
        file = createWriteStream(tmpPath, { mode: 0o600 });
        // Without a listener a write error (a full disk) would be an uncaught exception.
        file.on('error', (err) => (writeError ??= err));
        for (const c of chunks.splice(0)) file.write(c);
        zipBytesHeld -= inMemory.held.bytes;
        inMemory.held.bytes = 0;
      }
    }
  } catch (err) {
    file?.destroy();
    throw err;
  }
  if (!file) {
    const buffer = Buffer.concat(chunks, bytes);
    const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
      yauzl.fromBuffer(buffer, ZIP_OPTIONS, (err, z) => (err ? reject(err) : resolve(z))),
    );
    return { zip, buffer };
  }
  const f = file;
  await new Promise<void>((resolve, reject) => f.end((err?: Error | null) => (err ?? writeError ? reject(err ?? writeError) : resolve())));
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(tmpPath, ZIP_OPTIONS, (err, z) => (err ? reject(err) : resolve(z))),
  );
  return { zip, buffer: null };
}

/**
 * Resolves on the stream's next 'drain' or 'close' and leaves no listener behind: a race of two
 * events.once() kept the loser's listeners (and once()'s 'error' ones), so a zip spooled to disk
 * added three per drain (MaxListenersExceededWarning after ten).
 */
function drainedOrClosed(file: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      file.off('drain', done);
      file.off('close', done);
      resolve();
    };
    file.on('drain', done);
    file.on('close', done);
  });
}

/** A member's bytes from an in-memory zip: its local header locates the data (stored or deflated). */
async function memberBytes(zip: Buffer, entry: yauzl.Entry): Promise<Buffer> {
  const at = entry.relativeOffsetOfLocalHeader;
  if (at + 30 > zip.length || zip.readUInt32LE(at) !== 0x04034b50) throw new Error(`${entry.fileName}: bad local header`);
  const start = at + 30 + zip.readUInt16LE(at + 26) + zip.readUInt16LE(at + 28);
  const end = start + entry.compressedSize;
  if (end > zip.length) throw new Error(`${entry.fileName}: member runs past the end of the zip`);
  return decode(entry.fileName, entry.compressionMethod, zip.subarray(start, end), entry.uncompressedSize);
}

/**
 * Unpack a stored or deflated member and check its size. A stored member is copied unless `owned`:
 * a view would keep the whole zip in memory for as long as the file is cached.
 */
async function decode(name: string, method: number, raw: Buffer, size: number, owned = false): Promise<Buffer> {
  // Small members inflate inline (tens of microseconds): through the thread pool they would queue
  // behind the cache's disk writes. Large ones go to the pool, off the main thread.
  if (method !== 8 || raw.length <= INLINE_INFLATE_BYTES) return decodeNow(name, method, raw, size, owned);
  return checkSize(name, await inflateRaw(raw), size);
}

/** `decode` for stored and small deflated members, without a promise. */
function decodeNow(name: string, method: number, raw: Buffer, size: number, owned: boolean): Buffer {
  if (method !== 0 && method !== 8) throw new Error(`${name}: compression method ${method} is not supported`);
  return checkSize(name, method === 0 ? (owned ? raw : Buffer.from(raw)) : inflateRawSync(raw), size);
}

function checkSize(name: string, data: Buffer, size: number): Buffer {
  if (data.length !== size) throw new Error(`${name}: ${data.length} bytes unpacked, the zip says ${size}`);
  return data;
}
