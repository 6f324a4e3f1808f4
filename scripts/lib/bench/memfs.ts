// A tiny in-memory FsOps for the benchmark's FUSE floor/ceiling: whatever a program gets through
// it is the most xnatfs can ever get through the same adapter (no network, no disk, no catalogue).
// Directories are kept as name sets so that lookups stay O(1) with thousands of files.
import { constants } from 'node:fs';
import { FsError } from '../../../src/fs/errors.js';
import type { FsOps, Stat } from '../../../src/fs/types.js';

interface MemFile {
  data: Buffer; // capacity; the file is data[0, size)
  size: number;
}

export function createBenchMemFs(initial: Array<{ path: string; data: Buffer }>): FsOps {
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
    files.set(f.path, { data: f.data, size: f.data.length });
    addEntry(f.path);
  }
  const file = (p: string): MemFile => {
    const f = files.get(p);
    if (!f) throw new FsError(dirs.has(p) ? 'EISDIR' : 'ENOENT', `${p}: no such file`);
    return f;
  };
  const resize = (f: MemFile, size: number): void => {
    if (size > f.data.length) {
      const next = Buffer.alloc(Math.max(size, Math.min(f.data.length * 2, size + (64 << 20))));
      f.data.copy(next, 0, 0, f.size);
      f.data = next;
    } else if (size > f.size) {
      f.data.fill(0, f.size, size);
    }
    f.size = size;
  };

  return {
    async getattr(p) {
      const f = files.get(p);
      if (f) return stat(constants.S_IFREG | 0o644, f.size);
      if (dirs.has(p)) return stat(constants.S_IFDIR | 0o755, 4096);
      throw new FsError('ENOENT', `${p}: no such file or directory`);
    },
    async readdir(p) {
      const set = dirs.get(p);
      if (!set) throw new FsError(files.has(p) ? 'ENOTDIR' : 'ENOENT', `${p}: not a directory`);
      return { names: [...set] };
    },
    async open(p) {
      file(p);
      return 0;
    },
    async read(p, _fd, buf, len, pos) {
      const f = file(p);
      if (pos >= f.size) return 0;
      return f.data.copy(buf, 0, pos, Math.min(pos + len, f.size));
    },
    async create(p) {
      const [dir] = parentOf(p);
      if (!dirs.has(dir)) throw new FsError('ENOENT', `${dir}: no such directory`);
      files.set(p, { data: Buffer.alloc(0), size: 0 });
      addEntry(p);
      return 0;
    },
    async write(p, _fd, buf, len, pos) {
      const f = file(p);
      if (pos + len > f.size) resize(f, pos + len);
      buf.copy(f.data, pos, 0, len);
      return len;
    },
    async truncate(p, size) {
      resize(file(p), size);
    },
    async ftruncate(p, _fd, size) {
      resize(file(p), size);
    },
    async unlink(p) {
      file(p);
      files.delete(p);
      const [dir, name] = parentOf(p);
      dirs.get(dir)?.delete(name);
    },
  };
}
