// A tiny in-memory FsOps for the benchmark's FUSE floor/ceiling: whatever a program gets through
// it is the most xnatfs can ever get through the same adapter (no network, no disk, no catalogue).
// Directories are kept as name sets so that lookups stay O(1) with thousands of files.
import { constants } from 'node:fs';
import { FsError } from '../../../src/fs/errors.js';
import type { FsOps, Stat } from '../../../src/fs/types.js';

/**
 * File bytes in fixed-size chunks: writes never copy what is already there (a growing single
 * Buffer would memcpy and zero-fill the whole file again and again, and the "ceiling" would
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

/**
 * `handleCallbacks` adds no-op flush and release, the two callbacks xnatfs needs for its file
 * handles: each is one more trip to Node's main thread per close(), which the minimal floor
 * leaves to libfuse.
 */
export function createBenchMemFs(initial: Array<{ path: string; data: Buffer }>, withStats = process.env['XNATFS_BENCH_MEMFS_STATS'] !== '0', handleCallbacks = false): FsOps {
  const files = new Map<string, MemFile>();
  const dirs = new Map<string, Set<string>>([['/', new Set()]]);
  const epoch = new Date('2024-01-15T10:00:00Z');
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
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
  for (const f of initial) {
    files.set(f.path, new MemFile(f.data));
    addEntry(f.path);
  }
  const file = (p: string): MemFile => {
    const f = files.get(p);
    if (!f) throw new FsError(dirs.has(p) ? 'EISDIR' : 'ENOENT', `${p}: no such file`);
    return f;
  };
  const handles: Pick<FsOps, 'flush' | 'release'> = handleCallbacks ? { async flush() {}, async release() {} } : {};
  return {
    ...handles,
    async getattr(p) {
      const f = files.get(p);
      if (f) return stat(constants.S_IFREG | 0o644, f.size);
      if (dirs.has(p)) return stat(constants.S_IFDIR | 0o755, 4096);
      throw new FsError('ENOENT', `${p}: no such file or directory`);
    },
    async readdir(p) {
      const set = dirs.get(p);
      if (!set) throw new FsError(files.has(p) ? 'ENOTDIR' : 'ENOENT', `${p}: not a directory`);
      const names = [...set];
      if (!withStats) return { names };
      return { names, stats: names.map((n) => { const c = p === '/' ? `/${n}` : `${p}/${n}`; const f = files.get(c); return f ? stat(constants.S_IFREG | 0o644, f.size) : stat(constants.S_IFDIR | 0o755, 4096); }) };
    },
    async open(p) {
      file(p);
      return 0;
    },
    async read(p, _fd, buf, len, pos) {
      const f = file(p);
      if (pos >= f.size) return 0;
      return f.read(buf, len, pos);
    },
    async create(p) {
      const [dir] = parentOf(p);
      if (!dirs.has(dir)) throw new FsError('ENOENT', `${dir}: no such directory`);
      files.set(p, new MemFile());
      addEntry(p);
      return 0;
    },
    async write(p, _fd, buf, len, pos) {
      file(p).write(buf, len, pos);
      return len;
    },
    async truncate(p, size) {
      file(p).truncate(size);
    },
    async ftruncate(p, _fd, size) {
      file(p).truncate(size);
    },
    async unlink(p) {
      file(p);
      files.delete(p);
      const [dir, name] = parentOf(p);
      dirs.get(dir)?.delete(name);
    },
  };
}
