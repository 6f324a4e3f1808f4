// The contract between the fs layer (operations.ts) and the FUSE binding adapter (fuse-adapter.ts).
// Operations are promise-based and throw FsError; the adapter turns that into fuse-native's
// callback-and-negative-errno protocol. Only operations that are defined get registered with
// the kernel: every registered op costs a round trip to Node's main thread.

/**
 * The per-file operations a program's open-read-close runs through (getattr, open, read, flush,
 * release) may answer with a plain value when memory has the answer: no promise and no microtask
 * per kernel request (a cold `find -exec cat` over 2,000 small files: medians 3-16 % lower in four
 * interleaved batches). Failures are always rejected promises, never synchronous throws.
 */
export type MaybePromise<T> = T | Promise<T>;

export interface Stat {
  mode: number; // including S_IFDIR / S_IFREG
  size: number;
  mtime: Date;
  atime: Date;
  ctime: Date;
  nlink: number;
  uid: number;
  gid: number;
  blocks?: number;
  blksize?: number;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

export interface FsOps {
  init?(): Promise<void>;
  getattr?(path: string): MaybePromise<Stat>;
  readdir?(path: string): Promise<{ names: string[]; stats?: Stat[] }>;
  statfs?(path: string): Promise<StatFs>;
  access?(path: string, mode: number): Promise<void>;
  open?(path: string, flags: number): MaybePromise<number>;
  opendir?(path: string, flags: number): Promise<number>;
  releasedir?(path: string, fd: number): Promise<void>;
  /** Resolves with bytes read; 0 only at EOF. */
  read?(path: string, fd: number, buf: Buffer, len: number, pos: number): MaybePromise<number>;
  write?(path: string, fd: number, buf: Buffer, len: number, pos: number): Promise<number>;
  create?(path: string, mode: number): Promise<number>;
  truncate?(path: string, size: number): Promise<void>;
  ftruncate?(path: string, fd: number, size: number): Promise<void>;
  flush?(path: string, fd: number): MaybePromise<void>;
  fsync?(path: string, fd: number, datasync: boolean): Promise<void>;
  release?(path: string, fd: number): MaybePromise<void>;
  utimens?(path: string, atime: number, mtime: number): Promise<void>;
  chmod?(path: string, mode: number): Promise<void>;
  chown?(path: string, uid: number, gid: number): Promise<void>;
  unlink?(path: string): Promise<void>;
  mkdir?(path: string, mode: number): Promise<void>;
  rmdir?(path: string): Promise<void>;
  rename?(src: string, dest: string): Promise<void>;
}

export interface MountOptions {
  /** Absolute mount point; must exist and be an empty directory. */
  mountpoint: string;
  /** Shown in `mount` output, e.g. "xnatfs#https://xnat.example.org". */
  fsname: string;
  /** Keep file pages in the kernel page cache across opens while the file's size and mtime stay the same (libfuse's auto_cache). */
  kernelCache: boolean;
  /** Seconds the kernel may cache attributes / lookups (0 = always ask). */
  attrTimeout: number;
  entryTimeout: number;
  /** Ask the kernel for writes of up to max_write bytes instead of 4 KiB. */
  bigWrites: boolean;
  allowOther?: boolean;
  /** Mount `ro`: the kernel answers EROFS to every write without a trip to the filesystem. */
  readOnly?: boolean;
  /** Milliseconds fuse-native waits for a handler before answering ETIMEDOUT. */
  opTimeoutMs: number;
  /** libfuse's -d; noisy. */
  debug?: boolean;
}
