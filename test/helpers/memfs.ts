// A tiny in-memory FsOps: the FUSE adapter tests mount it, and the benchmark serves its floor and
// ceilings through it (no network, no disk, no catalogue: whatever a program gets through it is
// the most xnatfs can ever get through the same adapter). One implementation for both, so the
// floor the benchmark reports is the code the tests check.
// Deliberately free of the libuv threadpool (no fs calls): a test process that reads its own
// mount through fs.promises occupies pool threads while the handlers run on the main thread.
import { constants } from 'node:fs';
import { FsError } from '../../src/fs/errors.js';
import type { FsOps, Stat } from '../../src/fs/types.js';

/**
 * File bytes in fixed-size chunks: writes never copy what is already there (a growing single
 * Buffer would memcpy and zero-fill the whole file again and again, and a "ceiling" would
 * measure that instead of the binding).
 */
const CHUNK = 4 << 20;

class MemFile {
  private chunks: Buffer[] = [];
  size = 0;
  constructor(initial?: Buffer) {
    if (initial) {
      for (let off = 0; off < initial.length; off += CHUNK) this.chunks.push(initial.subarray(off, off + CHUNK));
      this.size = initial.length;
    }
  }
  read(buf: Buffer, len: number, pos: number): number {
    const end = Math.min(pos + len, this.size);
    let done = 0;
    while (pos + done < end) {
      const p = pos + done;
      const c = this.chunks[Math.floor(p / CHUNK)];
      const off = p % CHUNK;
      const n = Math.min(end - p, CHUNK - off);
      const have = c ? Math.max(0, Math.min(n, c.length - off)) : 0;
      if (have > 0) c!.copy(buf, done, off, off + have);
      if (have < n) buf.fill(0, done + have, done + n); // a hole
      done += n;
    }
    return done;
  }
  write(src: Buffer, len: number, pos: number): void {
    for (let done = 0; done < len; ) {
      const p = pos + done;
      const i = Math.floor(p / CHUNK);
      const off = p % CHUNK;
      while (this.chunks.length <= i) this.chunks.push(Buffer.alloc(0));
      let c = this.chunks[i]!;
      if (c.length < CHUNK) {
        // an initial (short, shared) chunk or a hole: give this chunk its own full-size store
        const own = Buffer.allocUnsafe(CHUNK);
        c.copy(own);
        own.fill(0, c.length);
        this.chunks[i] = c = own;
      }
      const n = Math.min(len - done, CHUNK - off);
      src.copy(c, off, done, done + n);
      done += n;
    }
    this.size = Math.max(this.size, pos + len);
  }
  truncate(size: number): void {
    if (size < this.size) {
      this.chunks.length = Math.ceil(size / CHUNK);
      const last = this.chunks[this.chunks.length - 1];
      const tail = size % CHUNK;
      if (last && tail && last.length === CHUNK) last.fill(0, tail);
    }
    this.size = size;
  }
}

export interface MemFsCounters {
  calls: Map<string, number>;
  maxReadLen: number;
  maxWriteLen: number;
  bytesRead: number;
  bytesWritten: number;
}

export interface MemFsOptions {
  /** Leave out create, write, truncate, ftruncate, unlink: the adapter then registers none of them. */
  readOnly?: boolean;
  uid?: number;
  gid?: number;
  /** readdir also returns each entry's attributes, as xnatfs does (default true). */
  withStats?: boolean;
  /**
   * No-op flush and release, the two callbacks xnatfs needs for its file handles: each is one
   * more trip to Node's main thread per close(), which a minimal filesystem leaves to libfuse.
   */
  handleCallbacks?: boolean;
}

export type MemFs = FsOps & {
  counters: MemFsCounters;
  /** A file's size, or undefined when there is none at `path`. */
  sizeOf(path: string): number | undefined;
};

/** Files by absolute path; folders are implied by the paths. */
export type MemFsContent = Record<string, string | Buffer> | Array<{ path: string; data: Buffer }>;

export function createMemFs(initial: MemFsContent = {}, options: MemFsOptions = {}): MemFs {
  const files = new Map<string, MemFile>();
  // Folders as name sets, so that lookups stay O(1) with thousands of files.
  const dirs = new Map<string, Set<string>>([['/', new Set()]]);
  const counters: MemFsCounters = { calls: new Map(), maxReadLen: 0, maxWriteLen: 0, bytesRead: 0, bytesWritten: 0 };
  const count = (op: string): void => void counters.calls.set(op, (counters.calls.get(op) ?? 0) + 1);
  const epoch = new Date('2024-01-15T10:00:00Z');
  const uid = options.uid ?? process.getuid?.() ?? 0;
  const gid = options.gid ?? process.getgid?.() ?? 0;
  const withStats = options.withStats ?? true;
  const stat = (mode: number, size: number): Stat => ({ mode, size, nlink: 1, uid, gid, mtime: epoch, atime: epoch, ctime: epoch });
  const parentOf = (p: string): [string, string] => {
    const i = p.lastIndexOf('/');
    return [i === 0 ? '/' : p.slice(0, i), p.slice(i + 1)];
  };
  const addEntry = (p: string): void => {
    const [dir, name] = parentOf(p);
    let set = dirs.get(dir);
    if (!set) {
      set = new Set();
      dirs.set(dir, set);
      addEntry(dir);
    }
    set.add(name);
  };
  const entries = Array.isArray(initial) ? initial : Object.entries(initial).map(([path, data]) => ({ path, data: Buffer.isBuffer(data) ? data : Buffer.from(data) }));
  for (const f of entries) {
    files.set(f.path, new MemFile(f.data));
    addEntry(f.path);
  }
  const file = (p: string): MemFile => {
    const f = files.get(p);
    if (!f) throw new FsError(dirs.has(p) ? 'EISDIR' : 'ENOENT', `${p}: no such file`);
    return f;
  };

  const ops: MemFs = {
    counters,
    sizeOf: (p) => files.get(p)?.size,
    async getattr(p) {
      count('getattr');
      const f = files.get(p);
      if (f) return stat(constants.S_IFREG | 0o644, f.size);
      if (dirs.has(p)) return stat(constants.S_IFDIR | 0o755, 4096);
      throw new FsError('ENOENT', `${p}: no such file or directory`);
    },
    async readdir(p) {
      count('readdir');
      const set = dirs.get(p);
      if (!set) throw new FsError(files.has(p) ? 'ENOTDIR' : 'ENOENT', `${p}: not a directory`);
      const names = [...set];
      if (!withStats) return { names };
      const statOf = (n: string): Stat => {
        const f = files.get(p === '/' ? `/${n}` : `${p}/${n}`);
        return f ? stat(constants.S_IFREG | 0o644, f.size) : stat(constants.S_IFDIR | 0o755, 4096);
      };
      return { names, stats: names.map(statOf) };
    },
    async open(p) {
      count('open');
      file(p);
      return 0;
    },
    async read(p, _fd, buf, len, pos) {
      count('read');
      counters.maxReadLen = Math.max(counters.maxReadLen, len);
      const f = file(p);
      if (pos >= f.size) return 0;
      const n = f.read(buf, len, pos);
      counters.bytesRead += n;
      return n;
    },
  };
  if (options.handleCallbacks) {
    Object.assign(ops, { async flush() {}, async release() {} } satisfies Partial<FsOps>);
  }
  if (options.readOnly) return ops;

  Object.assign(ops, {
    async create(p: string) {
      count('create');
      const [dir] = parentOf(p);
      if (!dirs.has(dir)) throw new FsError('ENOENT', `${dir}: no such directory`);
      files.set(p, new MemFile());
      addEntry(p);
      return 0;
    },
    async write(p: string, _fd: number, buf: Buffer, len: number, pos: number) {
      count('write');
      counters.maxWriteLen = Math.max(counters.maxWriteLen, len);
      file(p).write(buf, len, pos);
      counters.bytesWritten += len;
      return len;
    },
    async truncate(p: string, size: number) {
      count('truncate');
      file(p).truncate(size);
    },
    async ftruncate(p: string, _fd: number, size: number) {
      count('ftruncate');
      file(p).truncate(size);
    },
    async unlink(p: string) {
      count('unlink');
      file(p);
      files.delete(p);
      const [dir, name] = parentOf(p);
      dirs.get(dir)?.delete(name);
    },
  } satisfies Partial<FsOps>);
  return ops;
}
