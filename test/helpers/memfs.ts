// A tiny in-memory FsOps: files from a Map<path, Buffer>, directories implied by the paths.
// Used by the FUSE adapter tests and by benchmarks measuring the binding's own ceiling (no
// network, no disk: whatever throughput it gets is the most xnatfs can ever get).
// Deliberately free of the libuv threadpool (no fs calls): a test process that reads its own
// mount through fs.promises occupies pool threads while the handlers run on the main thread.
import { constants } from 'node:fs';
import { FsError } from '../../src/fs/errors.js';
import type { FsOps, Stat } from '../../src/fs/types.js';

export interface MemFsCounters {
  calls: Map<string, number>;
  maxReadLen: number;
  maxWriteLen: number;
  bytesRead: number;
  bytesWritten: number;
}

export interface MemFsOptions {
  /** Leave out write, create, truncate, unlink: the adapter then registers none of them. */
  readOnly?: boolean;
  uid?: number;
  gid?: number;
}

export type MemFs = FsOps & { files: Map<string, Buffer>; counters: MemFsCounters };

export function createMemFs(
  initial: Record<string, string | Buffer> | Map<string, Buffer> = {},
  options: MemFsOptions = {},
): MemFs {
  const files = new Map<string, Buffer>();
  const entries = initial instanceof Map ? initial.entries() : Object.entries(initial);
  for (const [p, data] of entries) files.set(p, Buffer.isBuffer(data) ? data : Buffer.from(data));
  const counters: MemFsCounters = { calls: new Map(), maxReadLen: 0, maxWriteLen: 0, bytesRead: 0, bytesWritten: 0 };
  const count = (op: string) => counters.calls.set(op, (counters.calls.get(op) ?? 0) + 1);
  const epoch = new Date('2024-01-01T00:00:00Z');
  const uid = options.uid ?? process.getuid?.() ?? 0;
  const gid = options.gid ?? process.getgid?.() ?? 0;
  const stat = (mode: number, size: number): Stat =>
    ({ mode, size, nlink: 1, uid, gid, mtime: epoch, atime: epoch, ctime: epoch });

  const isDir = (path: string): boolean =>
    path === '/' || [...files.keys()].some((f) => f.startsWith(path + '/'));
  const file = (path: string): Buffer => {
    const data = files.get(path);
    if (!data) throw new FsError(isDir(path) ? 'EISDIR' : 'ENOENT', `${path}: no such file`);
    return data;
  };

  const ops: MemFs = {
    files,
    counters,
    async getattr(path) {
      count('getattr');
      const data = files.get(path);
      if (data) return stat(constants.S_IFREG | 0o644, data.length);
      if (isDir(path)) return stat(constants.S_IFDIR | 0o755, 4096);
      throw new FsError('ENOENT', `${path}: no such file or directory`);
    },
    async readdir(path) {
      count('readdir');
      if (!isDir(path)) throw new FsError(files.has(path) ? 'ENOTDIR' : 'ENOENT', `${path}: not a directory`);
      const prefix = path === '/' ? '/' : path + '/';
      const names = new Set<string>();
      for (const f of files.keys()) if (f.startsWith(prefix)) names.add(f.slice(prefix.length).split('/')[0]);
      return { names: [...names] };
    },
    async open(path) {
      count('open');
      file(path);
      return 0;
    },
    async read(path, _fd, buf, len, pos) {
      count('read');
      counters.maxReadLen = Math.max(counters.maxReadLen, len);
      const data = file(path);
      if (pos >= data.length) return 0;
      const n = data.copy(buf, 0, pos, Math.min(pos + len, data.length));
      counters.bytesRead += n;
      return n;
    },
  };
  if (options.readOnly) return ops;

  // Backing stores allocated here, whose bytes past a file's length are ours to reuse.
  const owned = new WeakSet<ArrayBufferLike>();
  const resize = (path: string, size: number) => {
    const data = file(path);
    const next = Buffer.alloc(size);
    data.copy(next, 0, 0, Math.min(size, data.length));
    files.set(path, next);
  };
  Object.assign(ops, {
    async create(path: string) {
      count('create');
      files.set(path, Buffer.alloc(0));
      return 0;
    },
    async write(path: string, _fd: number, buf: Buffer, len: number, pos: number) {
      count('write');
      counters.maxWriteLen = Math.max(counters.maxWriteLen, len);
      let data = file(path);
      const end = pos + len;
      if (end > data.length) {
        if (owned.has(data.buffer) && data.byteOffset === 0 && end <= data.buffer.byteLength) {
          data = Buffer.from(data.buffer, 0, end); // spare capacity, still zero-filled
        } else {
          // Grow geometrically so that a sequential dd stays linear.
          const backing = Buffer.alloc(Math.max(end, Math.min(data.length * 2, end + (64 << 20))));
          owned.add(backing.buffer);
          data.copy(backing);
          data = backing.subarray(0, end);
        }
        files.set(path, data);
      }
      buf.copy(data, pos, 0, len);
      counters.bytesWritten += len;
      return len;
    },
    async truncate(path: string, size: number) {
      count('truncate');
      resize(path, size);
    },
    async ftruncate(path: string, _fd: number, size: number) {
      count('ftruncate');
      resize(path, size);
    },
    async unlink(path: string) {
      count('unlink');
      file(path);
      files.delete(path);
    },
  } satisfies Partial<FsOps>);
  return ops;
}
