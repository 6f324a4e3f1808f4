// Whole files fetched from XNAT, kept on local disk and bounded in total size (LRU).
// Keys cover server, URI, size and digest, so a file replaced on the server is a new entry.
// The directory is created 0700: it holds patient data.
import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, chmod, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import createDebug from 'debug';
import { keepAlive, orphanedFolders, ownFolderName } from './process-dirs.js';
import { LRUCache } from 'lru-cache';

const log = createDebug('xnatfs:cache');

export interface DiskCacheOptions {
  dir: string;
  maxBytes: number;
}

export class DiskCache {
  readonly objectsDir: string;
  readonly partialDir: string;
  private readonly index: LRUCache<string, number>;
  private partialSeq = 0;

  constructor(readonly options: DiskCacheOptions) {
    this.objectsDir = join(options.dir, 'objects');
    this.partialDir = join(options.dir, 'partial', ownFolderName());
    this.index = new LRUCache<string, number>({
      maxSize: Math.max(1, options.maxBytes),
      sizeCalculation: (size) => Math.max(1, size),
      // Unlinking a file that a reader still has open is safe on POSIX: its fd keeps the data.
      dispose: (_size, key, reason) => {
        if (reason === 'evict' || reason === 'delete') {
          unlink(this.objectPath(key)).catch(() => undefined);
        }
      },
    });
  }

  static keyOf(parts: { server: string; uri: string; size: number; digest: string }): string {
    return createHash('sha256').update(`${parts.server}\n${parts.uri}\n${parts.size}\n${parts.digest}`).digest('hex');
  }

  async init(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    await chmod(this.options.dir, 0o700);
    await mkdir(this.objectsDir, { recursive: true, mode: 0o700 });
    // Partial downloads of ended mounts are useless: their writer is gone. Those of a mount of
    // the same server still running, on this host or another sharing the folder, are its own.
    const partialRoot = join(this.options.dir, 'partial');
    await mkdir(partialRoot, { recursive: true, mode: 0o700 });
    for (const dir of await orphanedFolders(partialRoot)) await rm(dir, { recursive: true, force: true });
    await mkdir(this.partialDir, { recursive: true, mode: 0o700 });
    keepAlive(this.partialDir);
    const names = await readdir(this.objectsDir);
    let bytes = 0;
    for (const name of names) {
      try {
        const st = await stat(join(this.objectsDir, name));
        this.index.set(name, st.size, { noDisposeOnSet: true });
        bytes += st.size;
      } catch {
        // vanished meanwhile
      }
    }
    log('cache %s: %d files, %d bytes from earlier runs', this.options.dir, names.length, bytes);
  }

  objectPath(key: string): string {
    return join(this.objectsDir, key);
  }

  /** Path of a complete cached file, refreshing its recency; null on a miss. */
  lookup(key: string): string | null {
    return this.index.get(key) === undefined ? null : this.objectPath(key);
  }

  /** A fresh path to download into; commit() moves it into the cache. */
  partialPath(key: string): string {
    return join(this.partialDir, `${key}.${++this.partialSeq}`);
  }

  /**
   * Move a finished download into the cache. A file larger than the whole cache is not kept:
   * returns false and the caller deletes the partial file once no reader needs it.
   */
  async commit(key: string, partial: string, size: number): Promise<boolean> {
    if (size > this.options.maxBytes) return false;
    await rename(partial, this.objectPath(key));
    this.index.set(key, size);
    return true;
  }

  remove(key: string): void {
    this.index.delete(key);
  }

  get usedBytes(): number {
    return this.index.calculatedSize;
  }
}
