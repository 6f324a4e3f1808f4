// Prefetch of many small files in one request: XNAT's `…/resources/R/files?format=zip`.
// XNAT builds these zips on the fly and streams them (no Content-Length, data descriptors), so
// the zip is spooled to a temporary file and read through its central directory (yauzl: zip64,
// data descriptors and size validation that a hand-written parser would have to repeat). Each
// member that matches a wanted file (same path, same listed size) is handed to that file's
// download as its first source; the download still checks the MD5 digest, and any file the zip
// does not deliver falls back to its own GET.
import { createWriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import createDebug from 'debug';
import yauzl from 'yauzl';
import type { Owner, ReadResult, XnatApi } from '../xnat/types.js';

const log = createDebug('xnatfs:zip');

export interface WantedMember {
  size: number;
  resolve(result: ReadResult): void;
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
 * Download the resource's zip to `tmpPath` and feed wanted members to their waiters, one at a
 * time (each member stream is consumed before the next is opened, so memory stays bounded).
 * Every waiter is settled when this returns or throws: unmatched ones are rejected.
 */
export async function fetchZipMembers(
  client: XnatApi,
  owner: Owner,
  resource: string,
  wanted: Map<string, WantedMember>,
  tmpPath: string,
  signal?: AbortSignal,
): Promise<void> {
  const pending = new Map(wanted);
  try {
    const body = await client.downloadResourceZip(owner, resource, signal);
    await pipeline(body, createWriteStream(tmpPath, { mode: 0o600 }));
    const zip = await openZip(tmpPath);
    try {
      await new Promise<void>((resolve, reject) => {
        zip.on('error', reject);
        zip.on('end', () => resolve());
        zip.on('entry', (entry: yauzl.Entry) => {
          const path = memberPath(entry.fileName);
          const w = path !== null ? pending.get(path) : undefined;
          if (!w || w.size !== entry.uncompressedSize || entry.fileName.endsWith('/')) {
            zip.readEntry();
            return;
          }
          pending.delete(path!);
          zip.openReadStream(entry, (err, stream) => {
            if (err) {
              w.reject(err);
              zip.readEntry();
              return;
            }
            let next = false;
            const advance = (): void => {
              if (next) return;
              next = true;
              zip.readEntry();
            };
            stream.once('end', advance);
            stream.once('close', advance);
            stream.once('error', advance);
            w.resolve({ status: 200, start: 0, totalSize: entry.uncompressedSize, lastModified: null, body: stream as Readable });
          });
        });
        zip.readEntry();
      });
    } finally {
      zip.close();
    }
    log('zip of %s delivered %d of %d files', resource, wanted.size - pending.size, wanted.size);
  } finally {
    for (const w of pending.values()) w.reject(new Error('not delivered by the zip'));
    await unlink(tmpPath).catch(() => undefined);
  }
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) =>
    yauzl.open(path, { lazyEntries: true, autoClose: false, validateEntrySizes: true }, (err, zip) => (err ? reject(err) : resolve(zip))),
  );
}
