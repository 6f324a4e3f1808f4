// The only module that touches fuse-native. It turns promise-based FsOps into fuse-native's
// callback protocol and MountOptions into libfuse options.
//
// fuse-native runs libfuse's multi-threaded loop on its own threads; every request is handed
// to Node's main thread and the FUSE thread blocks until the handler answers. Consequences:
//  - only ops that are defined are registered (an unregistered op is answered by libfuse
//    itself, without a round trip to the main thread);
//  - the main thread must never block (no *Sync calls, no spawnSync touching the mount);
//  - fuse-native uses uv_default_loop(), so mounting from a worker_thread does not work.
import { createRequire } from 'node:module';
import createDebug from 'debug';
import type { FsOps, MaybePromise, MountOptions, Stat } from './types.js';
import { errnoOf } from './errors.js';
import { canonicalMountpoint, fusermountProblem, prepareMountpoint } from './mountpoint.js';

export { unmountPath } from './mountpoint.js';

const log = createDebug('xnatfs:fuse');

export interface FuseMount {
  mountpoint: string;
  /**
   * Unmount and release the binding. `detached`: someone else already unmounted it (the path may
   * hold another mount by now), so only the binding is released.
   */
  unmount(how?: { detached?: boolean }): Promise<void>;
}

/** Knobs beyond MountOptions; the defaults suit XNAT. */
export interface FuseTuning {
  /** Largest write request; libfuse 2 caps it at 128 KiB. Used with bigWrites. */
  maxWrite?: number;
  /** Readahead; libfuse can only lower the kernel's offer (128 KiB by default). */
  maxReadahead?: number;
  /** Per-op timeouts in ms overriding opTimeoutMs; false = wait forever. */
  opTimeouts?: Partial<Record<OpName, number | false>>;
}

/**
 * Why a deliberate timeout: fuse-native answers ETIMEDOUT for any handler slower than its
 * timeout (15 s by default), which would cut a slow XNAT listing or a large first download
 * short. No timeout at all means a hung server hangs `ls` (and the shell) forever. Two minutes
 * leaves room for slow listings while still failing eventually; the CLI makes it configurable.
 */
export const DEFAULT_OP_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_WRITE = 128 * 1024;
const DEFAULT_MAX_READAHEAD = 128 * 1024;

const OP_NAMES = [
  'init', 'getattr', 'readdir', 'statfs', 'access', 'open', 'opendir', 'releasedir', 'read',
  'write', 'create', 'truncate', 'ftruncate', 'flush', 'fsync', 'release', 'utimens', 'chmod',
  'chown', 'unlink', 'mkdir', 'rmdir', 'rename',
] as const satisfies ReadonlyArray<keyof FsOps>;
export type OpName = (typeof OP_NAMES)[number];

type Cb = (result: number, ...values: unknown[]) => void;
type Handler = (...args: any[]) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

interface FuseNative {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  /** Added by patches/: release the handle without fusermount. */
  releaseDetached(cb: (err: Error | null) => void): void;
}
type FuseNativeCtor = new (mnt: string, ops: Record<string, Handler>, opts: object) => FuseNative;

let fuseNative: FuseNativeCtor | undefined;
/** Loaded lazily so that commands that never mount work without libfuse. */
function loadFuseNative(): FuseNativeCtor {
  if (!fuseNative) {
    try {
      fuseNative = createRequire(import.meta.url)('fuse-native') as FuseNativeCtor;
    } catch (err) {
      throw new Error(
        `cannot load the FUSE library (${(err as Error).message.split('\n')[0]}): ` +
          'install libfuse 2 (Debian/Ubuntu: apt-get install libfuse2 fuse3; RHEL: dnf install fuse fuse-libs)',
        { cause: err },
      );
    }
  }
  return fuseNative;
}

const reported = new Set<string>();
/** Negative errno for the kernel. FsErrors carry theirs; anything else is a bug: EIO, logged. */
function errnoFor(op: string, path: unknown, err: unknown): number {
  const e = err as { name?: unknown; errno?: unknown; code?: unknown; message?: unknown } | null;
  // Duck-typed so that FsErrors from another copy of errors.js still map.
  if (e && e.name === 'FsError' && typeof e.errno === 'number' && e.errno < 0) {
    log('%s %s -> %s: %s', op, path, e.code, e.message);
    // ENOENT, EEXIST, ENOTEMPTY … are everyday answers; failures a person must act on are shown.
    if (typeof e.code === 'string' && SHOWN.has(e.code)) report(`xnatfs: ${String(e.message)}`);
    return e.errno;
  }
  log('%s %s -> EIO: unexpected error %O', op, path, err);
  report(`xnatfs: ${op} ${String(path ?? '')}: ${err instanceof Error ? err.message : String(err)} (answered EIO)`);
  return errnoOf('EIO');
}

const SHOWN = new Set(['EIO', 'EACCES', 'EPERM', 'ETIMEDOUT', 'EROFS', 'ENOSPC', 'EINVAL', 'ENAMETOOLONG']);

/** One console line per distinct failure: a broken server must not flood the terminal. */
function report(line: string): void {
  if (reported.has(line)) return;
  if (reported.size >= 1000) reported.clear();
  reported.add(line);
  console.error(line);
}

function toFuseStat(s: Stat): object {
  return {
    mode: s.mode,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    nlink: s.nlink,
    atime: s.atime,
    mtime: s.mtime,
    ctime: s.ctime,
    blocks: s.blocks ?? Math.ceil(s.size / 512), // du and ls -s use it
    blksize: s.blksize ?? 0,
  };
}

/**
 * fuse-native handlers for the ops that `ops` defines, and nothing else. Each awaits the op
 * and answers `cb(0, ...values)`, or a byte count for read/write, or a negative errno.
 */
export function buildHandlers(ops: FsOps, timeoutMs = 0): Record<string, Handler> {
  const handlers: Record<string, Handler> = {};

  const settle = <T>(op: string, path: unknown, cb: Cb, run: () => MaybePromise<T>, reply: (v: T) => unknown[]): void => {
    const fail = (err: unknown) => cb(errnoFor(op, path, err));
    const answer = (v: T): void => {
      let args: unknown[];
      try {
        args = reply(v);
      } catch (err) {
        fail(err);
        return;
      }
      (cb as (...a: unknown[]) => void)(...args);
    };
    let p: MaybePromise<T>;
    try {
      p = run();
    } catch (err) {
      fail(err);
      return;
    }
    // Answered from memory: reply within this callback, without a microtask.
    if (!(p instanceof Promise)) return answer(p);
    const started = Date.now();
    p.then((v) => {
      if (timeoutMs > 0 && Date.now() - started > timeoutMs) {
        log('%s %s answered after %d ms, the kernel already got ETIMEDOUT', op, path, Date.now() - started);
      }
      answer(v);
    }, fail);
  };
  const ok = (): unknown[] => [0];
  const fd = (n: number): unknown[] => [0, n];

  for (const name of OP_NAMES) {
    const fn = ops[name];
    if (typeof fn !== 'function') continue;
    const o = ops as Required<FsOps>;
    switch (name) {
      case 'init':
        // Only here to satisfy the type switch; mountFuse wires init itself.
        break;
      case 'getattr':
        handlers.getattr = (path: string, cb: Cb) =>
          settle(name, path, cb, () => o.getattr(path), (s) => [0, toFuseStat(s)]);
        break;
      case 'readdir':
        // fuse-native drops the stats unless there is one per name; libfuse 2's high-level
        // API only takes the file type (d_type) from them, attributes are not cached.
        handlers.readdir = (path: string, cb: Cb) =>
          settle(name, path, cb, () => o.readdir(path), ({ names, stats }) =>
            stats && stats.length === names.length ? [0, names, stats.map(toFuseStat)] : [0, names]);
        break;
      case 'statfs':
        handlers.statfs = (path: string, cb: Cb) => settle(name, path, cb, () => o.statfs(path), (s) => [0, s]);
        break;
      case 'access':
        handlers.access = (path: string, mode: number, cb: Cb) =>
          settle(name, path, cb, () => o.access(path, mode), ok);
        break;
      case 'open':
        handlers.open = (path: string, flags: number, cb: Cb) =>
          settle(name, path, cb, () => o.open(path, flags), fd);
        break;
      case 'opendir':
        // fuse-native passes the (still empty) file handle where its docs say flags.
        handlers.opendir = (path: string, flags: number, cb: Cb) =>
          settle(name, path, cb, () => o.opendir(path, flags), fd);
        break;
      case 'releasedir':
        handlers.releasedir = (path: string, h: number, cb: Cb) =>
          settle(name, path, cb, () => o.releasedir(path, h), ok);
        break;
      case 'read':
        handlers.read = (path: string, h: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
          settle(name, path, cb, () => o.read(path, h, buf, len, pos), (n) => [Math.min(n, len)]);
        break;
      case 'write':
        handlers.write = (path: string, h: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
          settle(name, path, cb, () => o.write(path, h, buf, len, pos), (n) => [Math.min(n, len)]);
        break;
      case 'create':
        handlers.create = (path: string, mode: number, cb: Cb) =>
          settle(name, path, cb, () => o.create(path, mode), fd);
        break;
      case 'truncate':
        handlers.truncate = (path: string, size: number, cb: Cb) =>
          settle(name, path, cb, () => o.truncate(path, size), ok);
        break;
      case 'ftruncate':
        handlers.ftruncate = (path: string, h: number, size: number, cb: Cb) =>
          settle(name, path, cb, () => o.ftruncate(path, h, size), ok);
        break;
      case 'flush':
        handlers.flush = (path: string, h: number, cb: Cb) => settle(name, path, cb, () => o.flush(path, h), ok);
        break;
      case 'fsync':
        // fuse-native calls fsync(path, datasync, fd) — note the order.
        handlers.fsync = (path: string, datasync: number, h: number, cb: Cb) =>
          settle(name, path, cb, () => o.fsync(path, h, Boolean(datasync)), ok);
        break;
      case 'release':
        handlers.release = (path: string, h: number, cb: Cb) => settle(name, path, cb, () => o.release(path, h), ok);
        break;
      case 'utimens':
        // fuse-native 2.2.6's binding passes atime twice: mtime is really atime.
        handlers.utimens = (path: string, atime: number, mtime: number, cb: Cb) =>
          settle(name, path, cb, () => o.utimens(path, atime, mtime), ok);
        break;
      case 'chmod':
        handlers.chmod = (path: string, mode: number, cb: Cb) => settle(name, path, cb, () => o.chmod(path, mode), ok);
        break;
      case 'chown':
        handlers.chown = (path: string, uid: number, gid: number, cb: Cb) =>
          settle(name, path, cb, () => o.chown(path, uid, gid), ok);
        break;
      case 'unlink':
        handlers.unlink = (path: string, cb: Cb) => settle(name, path, cb, () => o.unlink(path), ok);
        break;
      case 'mkdir':
        handlers.mkdir = (path: string, mode: number, cb: Cb) => settle(name, path, cb, () => o.mkdir(path, mode), ok);
        break;
      case 'rmdir':
        handlers.rmdir = (path: string, cb: Cb) => settle(name, path, cb, () => o.rmdir(path), ok);
        break;
      case 'rename':
        handlers.rename = (src: string, dest: string, cb: Cb) =>
          settle(name, src, cb, () => o.rename(src, dest), ok);
        break;
      default: {
        const never: never = name;
        throw new Error(`unhandled op ${String(never)}`);
      }
    }
  }
  return handlers;
}

/** fuse-native's options for a mount (exported for tests). */
export function fuseOptions(opts: MountOptions & FuseTuning): Record<string, unknown> {
  // Commas separate libfuse options, and fuse-native copies the whole option string into a
  // 1 KiB buffer: keep fsname short and comma-free.
  const fsname = opts.fsname.replace(/,/g, '%2C').slice(0, 256);
  const timeout =
    opts.opTimeoutMs > 0
      ? { default: opts.opTimeoutMs, ...opts.opTimeouts }
      : false; // fuse-native reads `default: 0` as "15 s"; false disables timeouts
  return {
    fsname,
    subtype: 'xnatfs',
    // libfuse's auto_cache, not kernel_cache: kernel_cache keeps a file's pages across opens
    // forever, so a file replaced on XNAT (a same-size one always, a longer one up to the old
    // size) was read back as its old bytes after the listing showed the new size, time and MD5.
    // auto_cache keeps the pages only while the size and mtime libfuse last saw are unchanged
    // (xnatfs gives every file of a changed resource a new mtime), checked at open: an open within
    // attr_timeout of the last lookup costs nothing more, a later one a getattr.
    autoCache: opts.kernelCache,
    attrTimeout: opts.attrTimeout,
    entryTimeout: opts.entryTimeout,
    bigWrites: opts.bigWrites,
    maxWrite: opts.bigWrites ? (opts.maxWrite ?? DEFAULT_MAX_WRITE) : undefined,
    maxReadahead: opts.maxReadahead ?? DEFAULT_MAX_READAHEAD,
    allowOther: opts.allowOther ?? false,
    readOnly: opts.readOnly ?? false,
    debug: opts.debug ?? false,
    timeout,
    force: false, // prepareMountpoint already cleared stale mounts, with better messages
    mkdir: false,
  };
}

/**
 * Mount `ops` at opts.mountpoint (checked with prepareMountpoint first). Resolves once the
 * kernel has initialised the mount and ops.init, if any, has finished; a failing init
 * unmounts again and rejects with its error.
 */
export async function mountFuse(ops: FsOps, opts: MountOptions & FuseTuning): Promise<FuseMount> {
  const mountpoint = await canonicalMountpoint(opts.mountpoint);
  await prepareMountpoint(mountpoint);
  const Fuse = loadFuseNative();
  const options = fuseOptions(opts);
  const handlers = buildHandlers(ops, opts.opTimeoutMs);

  // fuse-native reports "mounted" when the kernel's INIT arrives, before ops.init runs.
  let initDone: Promise<void> = Promise.resolve();
  if (typeof ops.init === 'function') {
    const init = ops.init.bind(ops);
    let settleInit!: (err?: unknown) => void;
    initDone = new Promise<void>((res, rej) => (settleInit = (err) => (err === undefined ? res() : rej(err))));
    handlers.init = (cb: Cb) => {
      init().then(
        () => { settleInit(); cb(0); },
        (err: unknown) => { settleInit(err ?? new Error('init failed')); cb(errnoFor('init', '/', err)); },
      );
    };
  }

  log('mounting %s with %o, ops: %s', mountpoint, options, Object.keys(handlers).join(' '));
  const fuse = new Fuse(mountpoint, handlers, options);
  const failed = await new Promise<Error | null>((res) => fuse.mount((err) => res(err ?? null)));
  if (failed) {
    // fusermount's own message is lost (Node marks fds 0-2 close-on-exec): name the cause when
    // it can be found (/dev/fuse and the mount point were checked before), else list them.
    const why = process.getuid?.() === 0 ? null : await fusermountProblem();
    throw new Error(
      why
        ? `could not mount ${mountpoint}: ${why}`
        : `could not mount ${mountpoint}: ${failed.message}. Usual causes: /dev/fuse missing or not accessible; ` +
          'no setuid fusermount (Debian/Ubuntu: apt-get install fuse3); a mount point you do not own',
      { cause: failed },
    );
  }

  let closing: Promise<void> | undefined;
  const unmount = (how: { detached?: boolean } = {}): Promise<void> => {
    closing ??= new Promise<void>((res, rej) => {
      // The patched fuse-native also releases its handle when fusermount finds nothing mounted.
      const done = (err: Error | null): void => {
        if (!err) {
          log('unmounted %s', mountpoint);
          return res();
        }
        closing = undefined; // allow a retry once the mount is no longer busy
        rej(new Error(`could not unmount ${mountpoint}: ${err.message}`, { cause: err }));
      };
      if (how.detached) fuse.releaseDetached(done);
      else fuse.unmount(done);
    });
    return closing;
  };

  try {
    await initDone;
  } catch (err) {
    await unmount().catch((e: unknown) => log('unmount after failed init: %O', e));
    throw err;
  }
  log('mounted %s', mountpoint);
  return { mountpoint, unmount };
}
