// Every FUSE operation xnatfs implements: the read side (read-operations.ts) plus writes.
// Writes: mkdir in resources/ creates a resource; files under files/ are spooled to local disk
// and uploaded on flush/fsync (close() waits for FLUSH, while RELEASE comes after close() has
// returned, so uploading there would hide failures from `cp`). A failed upload returns EIO,
// keeps the spool file and retries it in the background. See doc/SEMANTICS.md.
import { constants } from 'node:fs';
import { open, truncate as truncatePath, unlink as unlinkPath, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import createDebug from 'debug';
import { ownerKey, type FileNode, type Node } from '../catalogue/catalogue.js';
import { PathError } from '../catalogue/errors.js';
import { unescapeName } from '../catalogue/names.js';
import type { Uploader, UploadJob } from '../content/uploader.js';
import { unstorablePath } from '../xnat/paths.js';
import { XnatError, type XnatApi } from '../xnat/types.js';
import { FsError, toFsError } from './errors.js';
import { createReadOperations, dirStat, fileRefOf, fileStat, type FsContext } from './read-operations.js';
import type { FsOps, Stat } from './types.js';
import { WriteOverlay, type PendingFile, type Target } from './write-overlay.js';

const log = createDebug('xnatfs:fs');
const O_ACCMODE = 3;
/** Handles on spooled files are numbered apart from the content store's read handles. */
const SPOOL_FD_BASE = 1 << 30;
/** statfs tells programs that names have at most this many bytes. */
const NAME_MAX = 255;
/** The name libfuse 2 gives a file unlinked while open (`hidden_name`: directory and counter in hex). */
const FUSE_HIDDEN = /^\.fuse_hidden[0-9a-f]{16}$/;
/** How many uploaded files are remembered as written here (see `written`). */
const WRITTEN_REMEMBERED = 100_000;

export interface WriteContext extends FsContext {
  client: XnatApi;
  uploader: Uploader;
  spoolDir: string;
  /** A file changed by truncate(2) without an open handle is uploaded after this idle time. */
  idleUploadMs: number;
  /** A file written from its start reaching this size is uploaded while written (Infinity: never). */
  streamUploadBytes: number;
}

export interface XnatFs {
  ops: FsOps;
  overlay: WriteOverlay;
  /** Called by the uploader after every successful upload: listings of that owner are stale. */
  onUploaded(job: UploadJob): void;
  /**
   * Unmounting: refuse new writes (EROFS), upload files waiting for their idle time now, and
   * wait until no file is open for writing or the deadline passes. Returns the files programs
   * still hold open for writing then: their bytes are in the spool but not uploaded.
   */
  finishWrites(deadline: number): Promise<UnfinishedWrite[]>;
}

export interface UnfinishedWrite {
  displayPath: string;
  spoolPath: string;
  lastError: string;
}

export function createOperations(ctx: WriteContext): XnatFs {
  // `held`: versions open for reading; a change made here ends their hold (open-versions.ts).
  const { held, ...read } = createReadOperations(ctx);
  const overlay = new WriteOverlay();
  const spoolHandles = new Map<number, { file: PendingFile; writable: boolean }>();
  /**
   * Files this mount created or changed that XNAT now has (the most recent ones), so that a copy
   * setting their times, mode or owner after closing them still succeeds, as while they were
   * pending: rsync closes its temporary file (the upload) and only then sets them, then renames.
   */
  const written = new Set<string>();
  const noteWritten = (path: string): void => {
    written.delete(path);
    written.add(path);
    if (written.size > WRITTEN_REMEMBERED) written.delete(written.values().next().value!);
  };
  /** A file or folder whose times, mode and owner a copy may set without them being kept. */
  const madeHere = (path: string): boolean => overlay.files.get(path)?.changed === true || overlay.dirs.has(path) || written.has(path);
  let nextFd = SPOOL_FD_BASE;

  // (A --read-only mount never gets here: it registers only the read side, see the end.)
  let unmounting = false;
  const refuseWrites = (path: string, what: string): void => {
    if (unmounting) throw new FsError('EROFS', `${what} ${path}: xnatfs is unmounting; write it again after the next mount`);
  };

  const relPath = (t: Target): string => t.components.map(unescapeName).join('/');

  /**
   * Refuse at once a name XNAT cannot store, rather than accept the file and fail its upload
   * later: a shell's `echo … > file` never sees an error at close (bash restores its stdout with
   * dup2, which drops it), and a name that XNAT answers 500 to would be retried forever. `t` is
   * the new file's place, or for a folder made in files/ null (only its own name is known then).
   */
  function checkNewName(path: string, what: string, t: Target | null, invalid: 'EINVAL' | 'EXDEV' = 'EINVAL'): void {
    const name = basename(path);
    if (Buffer.byteLength(name) > NAME_MAX) {
      throw new FsError('ENAMETOOLONG', `${what} ${path}: names are at most ${NAME_MAX} bytes long (this one has ${Buffer.byteLength(name)})`);
    }
    // "%2F" in a name shows a "/" XNAT has (names.ts); XNAT is never sent one inside a name.
    const xnatName = unescapeName(name);
    if (xnatName.includes('/') || xnatName === '' || xnatName === '.' || xnatName === '..') {
      throw new FsError(invalid, `${what} ${path}: on this mount '%2F', '%2E' and '%00' stand for '/', '.' and '', which XNAT names cannot be or hold; write '%25' for a '%' before them`);
    }
    const problem = t ? unstorablePath(relPath(t)) : null;
    if (problem) throw new FsError(invalid, `${what} ${path}: ${problem}`);
  }

  /** The XNAT place of a folder path inside files/, or null if the path is not such a folder. */
  async function targetOfDir(path: string): Promise<Target | null> {
    const local = overlay.dirs.get(path);
    if (local) return local.target;
    let node: Node;
    try {
      node = await ctx.catalogue.resolve(path);
    } catch {
      return null;
    }
    if (node.kind !== 'folder') return null;
    return { owner: node.owner, resourceLabel: node.resource.label, components: node.components };
  }

  /**
   * Made here, or a folder files are written into (a resource's files/ and the folders in it):
   * mode, owner and times are taken without being kept. Folders show their resource's time
   * whatever is set (XNAT keeps none for folders), so no time of theirs is lost, and
   * `cp -a src/. …/files/` sets the times and mode of files/ itself after copying into it.
   */
  async function takesAnyAttributes(path: string): Promise<boolean> {
    return madeHere(path) || (await targetOfDir(path)) !== null;
  }

  async function serverNode(path: string): Promise<Node | null> {
    try {
      return await ctx.catalogue.resolve(path);
    } catch (err) {
      if (err instanceof PathError && err.kind === 'not-found') return null;
      throw toFsError(err, path);
    }
  }

  /** `onServer`: what XNAT holds at the target now, if anything (the upload overwrites it). */
  async function newPending(path: string, target: Target, onServer: Node | null, lazyFromServer: boolean): Promise<PendingFile> {
    // Made here, not with a temp-file module: tmp read $TMPDIR when it was loaded, and a batch
    // job's TMPDIR that no longer exists (set by an earlier job) killed the mount at its start,
    // though the spool lives in the cache folder. O_EXCL: a name never taken twice.
    const spool = { path: join(ctx.spoolDir, `spool--${process.pid}-${randomBytes(9).toString('base64url')}--${basename(path).slice(-60)}`) };
    await (await open(spool.path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600)).close();
    const f: PendingFile = {
      path, target, spoolPath: spool.path, fh: null, fhOpening: null, size: 0,
      // Opened for writing, a file on XNAT is unchanged until written: it keeps the time it showed.
      mtime: lazyFromServer && onServer?.kind === 'file' ? new Date(onServer.shownAt) : new Date(), changed: !lazyFromServer, opens: 0,
      dirty: !lazyFromServer, deleted: false, overwrite: onServer !== null, replaces: onServer?.kind === 'file' ? fileRefOf(onServer) : null, lazyFromServer, populating: null, uploading: null, retrying: false, idleUpload: null,
      appending: !lazyFromServer, appendEnd: 0, writing: 0, streaming: null,
    };
    overlay.addFile(f);
    held.forget(path);
    if (!lazyFromServer) supersedeReaders(path); // made empty: its bytes on XNAT are not its bytes any more
    return f;
  }

  function markChanged(f: PendingFile): void {
    // Its first change: handles opened later on are the spool's own.
    if (!f.changed) supersedeReaders(f.path);
    f.changed = true;
    f.mtime = new Date();
  }

  /**
   * Read handles opened on a file before it was changed through this mount, each with a handle
   * on the file's current version once XNAT has it (null: not opened yet). On a disk every handle
   * sees a write at once. These read on in the version they were opened on, and the kernel kept
   * those old bytes in its page cache, where later opens found them: the size and time were
   * already the new ones (cat after the writer's close printed the old bytes).
   */
  const superseded = new Map<number, Promise<number> | null>();

  function supersedeReaders(path: string): void {
    for (const fd of held.handlesAt(path)) {
      dropCurrent(fd);
      superseded.set(fd, null);
    }
  }

  /**
   * Superseded read handles open on a file written here and then removed while open: they read
   * its spool, as its own handles do, and keep it until their release (as a disk keeps an
   * unlinked file's bytes). Before, the spool went at the writer's release, and they read the
   * version from before the write again (and fstat answered ENOENT).
   */
  const holding = new Map<number, PendingFile>();

  /** libfuse renamed the file these read handles are open on: they read on by the new name. */
  function followRename(src: string, dest: string): void {
    for (const fd of held.handlesAt(src)) {
      if (!superseded.has(fd) || holding.has(fd)) continue;
      dropCurrent(fd); // XNAT's version under the old name is gone
      superseded.set(fd, null);
    }
    held.move(src, dest);
  }

  function dropCurrent(fd: number): void {
    const current = superseded.get(fd);
    if (current) void current.then((n) => (n >= 0 ? ctx.content.release(n) : undefined)).catch(() => undefined);
  }

  /** A superseded handle reads what is being written here, or else the version XNAT has now. */
  async function readCurrent(path: string, fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const kept = holding.get(fd);
    const f = kept ?? overlay.files.get(path);
    if (f && !f.lazyFromServer) {
      try {
        return await readSpoolOnce(f, buf, len, pos);
      } catch (err) {
        // Uploaded and settled meanwhile (its spool gone): XNAT has its bytes now.
        if (kept || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw toFsError(err, `reading ${path}`);
      }
    }
    let current = superseded.get(fd);
    if (!current) {
      const opening = openCurrent(path);
      // A failure (XNAT unreachable) is not kept: the next read asks again.
      opening.catch(() => {
        if (superseded.get(fd) === opening) superseded.set(fd, null);
      });
      current = opening;
      superseded.set(fd, current);
    }
    const n = await current.catch((err: unknown) => {
      throw toFsError(err, `reading ${path}`);
    });
    // Removed since: the version it was opened on, as a disk keeps an unlinked file's bytes.
    if (n < 0) return read.read(path, fd, buf, len, pos);
    try {
      return await ctx.content.read(n, buf, len, pos);
    } catch (err) {
      throw toFsError(err, `reading ${path}`);
    }
  }

  /** -1: XNAT has no file there now. A listing that fails is an error, not a file removed. */
  async function openCurrent(path: string): Promise<number> {
    const node = await serverNode(path);
    return node?.kind === 'file' ? ctx.content.open(fileRefOf(node)) : -1;
  }

  /**
   * Fill a lazily-created spool with the server's bytes (append, O_RDWR without truncation).
   * Once per file: concurrent writers share one fill, so none of them is overwritten by it.
   */
  function populate(f: PendingFile): Promise<void> {
    if (!f.lazyFromServer) return Promise.resolve();
    f.populating ??= fill(f).finally(() => {
      f.populating = null;
    });
    return f.populating;
  }

  // The file stays lazy (XNAT's size and bytes, for getattr and the other handles, whose reads
  // and writes wait for this fill) until the spool holds all of it: a stat meanwhile showed size
  // 0, and a read through another handle the part copied so far.
  async function fill(f: PendingFile): Promise<void> {
    const node = await serverNode(f.path);
    if (!node || node.kind !== 'file') {
      f.lazyFromServer = false;
      return;
    }
    const fd = await ctx.content.open(fileRefOf(node));
    const out = await open(f.spoolPath, 'r+');
    try {
      const buf = Buffer.alloc(1 << 20);
      let pos = 0;
      for (;;) {
        const n = await ctx.content.read(fd, buf, buf.length, pos);
        if (n === 0) break;
        await out.write(buf, 0, n, pos);
        pos += n;
      }
      f.size = pos;
      f.lazyFromServer = false;
    } catch (err) {
      throw toFsError(err, `reading ${f.path} from XNAT before changing it`);
    } finally {
      await out.close();
      await ctx.content.release(fd);
    }
  }

  /** The spool file's handle, opened once however many reads and writes arrive together. */
  function handleOf(f: PendingFile): Promise<FileHandle> {
    f.fhOpening ??= open(f.spoolPath, 'r+').then((fh) => (f.fh = fh));
    return f.fhOpening;
  }

  function jobOf(f: PendingFile): UploadJob {
    return {
      owner: f.target.owner, resource: f.target.resourceLabel, path: relPath(f.target), spoolPath: f.spoolPath,
      size: f.size, overwrite: f.overwrite, displayPath: f.path, ...(f.replaces ? { replaces: f.replaces } : {}),
      changedAt: f.mtime.getTime(),
    };
  }

  /** Upload if changed; on failure hand over to background retries and answer EIO. */
  async function sync(f: PendingFile): Promise<void> {
    for (;;) {
      while (f.uploading) await f.uploading.catch(() => undefined);
      if (!f.dirty || f.deleted) return; // unlinked while open: its bytes go nowhere, as on a disk
      if (!f.retrying) break;
      await takeBack(f);
    }
    f.dirty = false;
    const job = jobOf(f);
    const p = uploadNow(f, job);
    f.uploading = p;
    try {
      await p;
      f.overwrite = true;
    } catch (err) {
      // Unlinked (or replaced by a rename) during the upload: unlink waits for it and deletes
      // whatever landed, so a retry handed to the background now would bring the file back.
      if (f.deleted) return;
      // Cut short by another handle (O_TRUNC, truncate) while this one's version went up: that
      // version is gone here too, and the one being written now goes up at its own close (or at
      // the last release). A local disk would not fail this close either.
      if (f.dirty && f.size < job.size && !(err instanceof XnatError)) {
        log('%s: upload of the version closed here dropped: another handle cut the file to %d bytes meanwhile', f.path, f.size);
        return;
      }
      if (isPermanent(err)) {
        // Retrying cannot help (no write permission, a name XNAT cannot store): the caller's
        // close() fails, and the copy it came from is still theirs. Nothing is kept half-done.
        // Not `dirty = false`: a write through another handle during this upload set it again,
        // and that handle's close must try (and fail) too, not succeed without uploading.
        overlay.removeFile(f.path);
        await settle(f);
        throw toFsError(err, `upload of ${f.path}`);
      }
      f.retrying = true;
      await ctx.uploader.retryInBackground(job, err, async () => {
        f.retrying = false;
        f.overwrite = true;
        await settle(f);
      });
      // A duplicate: another file under this name that is not ours (the uploader compared them).
      const reason = err instanceof XnatError && err.kind === 'duplicate'
        ? `${err.message} (remove it, or copy ours elsewhere)`
        : (err as Error).message;
      // A session XNAT no longer takes (401 after logging in again) is EACCES, as everywhere.
      const code = err instanceof XnatError && err.kind === 'unauthorized' ? 'EACCES' : 'EIO';
      throw new FsError(code, `upload of ${f.path} failed: ${reason}; kept in ${f.spoolPath}, retrying in the background`, { cause: err });
    } finally {
      f.uploading = null;
    }
  }

  /**
   * Take a file's upload back from its background retries: before its spool changes again (a
   * retry must not send a half-rewritten spool, nor its note let the next mount resume one), or
   * to upload it now. The note goes, and an attempt under way ends first; concurrent syncs wait
   * on this too.
   */
  async function takeBack(f: PendingFile): Promise<void> {
    f.retrying = false;
    const cancelled = ctx.uploader.cancel(f.spoolPath);
    const waiting = cancelled.then(() => undefined);
    f.uploading = waiting;
    const retried = await cancelled;
    if (f.uploading === waiting) f.uploading = null;
    // One of its retries landed (even the attempt just ended): XNAT holds our older copy, and
    // the next upload replaces it. Otherwise a file that was new is still sent without overwrite:
    // a copy of ours whose answer was lost is found by its size and MD5 (Uploader.unlessOurs).
    if (retried?.landed || retried?.job.overwrite) f.overwrite = true;
  }

  /** The upload at flush: the one that followed the writes if it saw them all, else from the spool. */
  async function uploadNow(f: PendingFile, job: UploadJob): Promise<void> {
    const streaming = f.streaming;
    f.streaming = null;
    if (!streaming) return ctx.uploader.upload(job);
    if (!f.appending || f.writing > 0) {
      streaming.abandon('writes still under way at flush');
      return ctx.uploader.upload(job);
    }
    try {
      await streaming.finish(job.size);
      return;
    } catch (err) {
      if (err instanceof XnatError && err.kind === 'duplicate') throw err;
      log('%s: the upload started while it was written failed (%s); uploading it from the spool', f.path, (err as Error).message);
      // If the whole body went out, XNAT may hold this copy although its answer was lost. A file
      // that replaces one is sent with overwrite anyway; a new one is not (someone else may store
      // that name meanwhile): its "duplicates" answer is checked for our size and MD5 instead.
      return ctx.uploader.upload(job);
    }
  }

  /** After a write: start the upload that follows this file, or tell it about the new bytes. */
  function followWrites(f: PendingFile): void {
    if (!f.appending || f.writing > 0) return;
    // Every byte below appendEnd was written by an appending write, and nothing beyond it.
    if (f.size !== f.appendEnd) return stopAppending(f, `${f.size} bytes written, ${f.appendEnd} by appending writes`);
    if (f.streaming) {
      f.streaming.grow(f.size);
      return;
    }
    if (f.size < ctx.streamUploadBytes || f.deleted || f.retrying || f.uploading || unmounting) return;
    f.streaming = ctx.uploader.startStreaming(jobOf(f));
    f.streaming?.grow(f.size);
  }

  /** The spool stops being a prefix of what was sent: the upload that followed it is dropped. */
  function stopAppending(f: PendingFile, why: string): void {
    f.appending = false;
    if (!f.streaming) return;
    log('%s: %s; uploading it when it is closed instead', f.path, why);
    f.streaming.abandon(why);
    f.streaming = null;
  }

  /** Emptied (create over it, O_TRUNC, truncate to 0): appending writes may start over. */
  function startAppending(f: PendingFile): void {
    stopAppending(f, 'emptied');
    f.appending = f.writing === 0; // a write racing the truncation may land anywhere
    f.appendEnd = 0;
  }

  /** Drop a pending file that XNAT now has and nobody holds open. */
  async function settle(f: PendingFile): Promise<void> {
    if (f.opens > 0 || (f.dirty && !f.deleted) || f.retrying || f.uploading || f.idleUpload) return;
    if (overlay.files.get(f.path) === f) {
      overlay.removeFile(f.path);
      if (f.changed && !f.deleted) noteWritten(f.path);
    }
    await unlinkPath(f.spoolPath).catch(() => undefined);
  }

  /**
   * An upload no program waits for (after close() returned, or of a truncate(2)): its failure
   * can only be told on stderr, one line, like the failures the kernel is answered.
   */
  function syncAfterClose(f: PendingFile): void {
    sync(f).then(
      () => settle(f),
      (err: unknown) => console.error(`xnatfs: ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  function scheduleIdleUpload(f: PendingFile): void {
    if (f.idleUpload) clearTimeout(f.idleUpload);
    f.idleUpload = setTimeout(() => {
      f.idleUpload = null;
      if (f.opens > 0) return; // an open handle's flush will upload it
      syncAfterClose(f);
    }, ctx.idleUploadMs);
  }

  function pendingOf(fd: number): { file: PendingFile; writable: boolean } | undefined {
    return fd >= SPOOL_FD_BASE ? spoolHandles.get(fd) : undefined;
  }

  async function openPending(f: PendingFile, writable: boolean): Promise<number> {
    if (f.idleUpload) {
      clearTimeout(f.idleUpload); // the handle's flush uploads it now
      f.idleUpload = null;
    }
    f.opens++;
    const fd = nextFd++;
    spoolHandles.set(fd, { file: f, writable });
    return fd;
  }

  /** open() of a file being written here, or of any file for writing. */
  async function openOverlayOrForWriting(path: string, flags: number, writable: boolean): Promise<number> {
    const f = overlay.files.get(path);
    if (f) {
      if (writable) refuseWrites(path, 'write');
      return openPending(f, writable);
    }
    refuseWrites(path, 'write');
    const pending = await pendingForServerFile(path);
    if (pending.populating) await pending.populating;
    if (flags & constants.O_TRUNC) {
      pending.lazyFromServer = false;
      pending.size = 0;
      pending.dirty = true;
      markChanged(pending);
      startAppending(pending);
    }
    return openPending(pending, true);
  }

  async function readPending(f: PendingFile, buf: Buffer, len: number, pos: number): Promise<number> {
    await populate(f);
    const fh = await handleOf(f);
    const { bytesRead } = await fh.read(buf, 0, len, pos);
    return bytesRead;
  }

  /**
   * A read by a superseded handle, which the file's `opens` do not count: the spool's shared
   * handle is closed at the last counted release, so one opened here could outlive it (open until
   * garbage collection, on a spool already deleted).
   */
  async function readSpoolOnce(f: PendingFile, buf: Buffer, len: number, pos: number): Promise<number> {
    await populate(f);
    const fh = await open(f.spoolPath, 'r');
    try {
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return bytesRead;
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  async function closeSpool(f: PendingFile): Promise<void> {
    const fh = f.fh ?? (f.fhOpening ? await f.fhOpening.catch(() => null) : null);
    f.fh = null;
    f.fhOpening = null;
    await fh?.close().catch(() => undefined);
  }

  /** The last close of a file being written uploads what flush did not. */
  async function releasePending(fd: number, f: PendingFile): Promise<void> {
    spoolHandles.delete(fd);
    f.opens--;
    if (f.opens > 0) return;
    await closeSpool(f);
    // Unlinked while open: nothing to upload, and its spool goes before the release returns.
    if (f.dirty && !f.deleted) {
      // Written through a path that never flushed (e.g. mmap): upload now, report in the log.
      syncAfterClose(f);
      return;
    }
    await settle(f);
  }

  /** Start replacing a server file: a pending file standing for its current bytes. */
  async function pendingForServerFile(path: string): Promise<PendingFile> {
    const existing = overlay.files.get(path);
    if (existing) return existing;
    const node = await serverNode(path);
    if (!node || node.kind !== 'file') throw new FsError('ENOENT', `${path}: no such file`);
    const target: Target = { owner: node.owner, resourceLabel: node.resource.label, components: node.components };
    return newPending(path, target, node, true);
  }

  const ops: FsOps = {
    // The read side first, so that every read op the writes do not override (statfs) is registered.
    ...read,
    getattr(path) {
      const f = overlay.files.get(path);
      if (f && !f.lazyFromServer) return fileStat(ctx, f.size, f.mtime);
      if (f) return Promise.resolve(read.getattr(path)).then((st) => fileStat(ctx, st.size, f.mtime));
      if (overlay.dirs.has(path)) return dirStat(ctx);
      return read.getattr(path);
    },

    async readdir(path) {
      const extra = overlay.childrenOf(path);
      let listed: { names: string[]; stats?: Stat[] };
      try {
        listed = await read.readdir(path);
      } catch (err) {
        // A folder made inside files/ exists only here until a file lands in it.
        if (!overlay.dirs.has(path)) throw err;
        listed = { names: ['.', '..'], stats: [dirStat(ctx), dirStat(ctx)] };
      }
      if (extra.length === 0) return listed;
      const entries = new Map<string, Stat>();
      listed.names.forEach((n, i) => entries.set(n, listed.stats?.[i] ?? dirStat(ctx)));
      for (const name of extra) {
        const child = `${path === '/' ? '' : path}/${name}`;
        const f = overlay.files.get(child);
        if (!f) entries.set(name, dirStat(ctx));
        else if (!f.lazyFromServer) entries.set(name, fileStat(ctx, f.size, f.mtime));
      }
      return { names: [...entries.keys()], stats: [...entries.values()] };
    },

    open(path, flags) {
      const writable = (flags & O_ACCMODE) !== constants.O_RDONLY;
      if (!writable && !overlay.files.has(path)) return read.open(path, flags);
      return openOverlayOrForWriting(path, flags, writable);
    },

    async create(path, _mode) {
      refuseWrites(path, 'create');
      const target = await targetOfDir(dirname(path));
      if (!target) throw new FsError('EACCES', `cannot create ${path}: files can only be created inside …/resources/<resource>/files/`);
      const existing = overlay.files.get(path);
      if (existing) {
        if (existing.populating) await existing.populating.catch(() => undefined); // it would write past the truncation
        existing.lazyFromServer = false;
        if (existing.retrying) await takeBack(existing);
        stopAppending(existing, 'created again'); // before the truncation it would otherwise read
        await truncatePath(existing.spoolPath, 0);
        existing.size = 0;
        existing.dirty = true;
        markChanged(existing);
        startAppending(existing);
        return openPending(existing, true);
      }
      const fileTarget: Target = { ...target, components: [...target.components, basename(path)] };
      checkNewName(path, 'create', fileTarget);
      const onServer = await serverNode(path);
      const f = await newPending(path, fileTarget, onServer, false);
      return openPending(f, true);
    },

    read(path, fd, buf, len, pos) {
      const h = pendingOf(fd);
      if (h) return readPending(h.file, buf, len, pos);
      return superseded.has(fd) ? readCurrent(path, fd, buf, len, pos) : read.read(path, fd, buf, len, pos);
    },

    async write(path, fd, buf, len, pos) {
      const h = pendingOf(fd);
      if (!h || !h.writable) throw new FsError('EBADF', `${path}: not open for writing`);
      const f = h.file;
      // Checked before any await: concurrent writes must not both pass as the next one.
      if (f.appending && pos === f.appendEnd) f.appendEnd = pos + len;
      else if (f.appending) stopAppending(f, `a write at byte ${pos}, not at the end (${f.appendEnd})`);
      f.writing++;
      try {
        if (f.retrying) await takeBack(f);
        await populate(f);
        const fh = await handleOf(f);
        let done = 0;
        while (done < len) {
          const { bytesWritten } = await fh.write(buf, done, len - done, pos + done);
          done += bytesWritten;
        }
      } catch (err) {
        stopAppending(f, 'a write failed');
        throw toFsError(err, `write to ${path}`);
      } finally {
        f.writing--;
      }
      f.size = Math.max(f.size, pos + len);
      f.dirty = true;
      markChanged(f);
      followWrites(f);
      return len;
    },

    async truncate(path, size) {
      refuseWrites(path, 'truncate');
      const f = overlay.files.get(path) ?? (await pendingForServerFile(path));
      if (f.retrying) await takeBack(f);
      if (f.populating) await f.populating;
      if (size === 0) f.lazyFromServer = false;
      else await populate(f);
      // Truncating to the size written so far changes nothing an upload has sent.
      if (size === 0) startAppending(f);
      else if (size !== f.size || f.writing > 0) stopAppending(f, `truncated to ${size} bytes`);
      await truncatePath(f.spoolPath, size);
      f.size = size;
      f.dirty = true;
      markChanged(f);
      if (f.opens === 0) scheduleIdleUpload(f);
    },

    async ftruncate(path, fd, size) {
      const h = pendingOf(fd);
      if (!h || !h.writable) throw new FsError('EBADF', `${path}: not open for writing`);
      return ops.truncate!(path, size);
    },

    flush(path, fd) {
      const h = pendingOf(fd);
      if (!h?.writable) return;
      // Still empty: a shell redirection or dd opens, dup2()s and closes the first descriptor
      // before writing through the other one. An empty file is uploaded at release instead (as
      // mountpoint-s3 does), so that this close costs no PUT of an empty file.
      if (h.file.size === 0 && !h.file.lazyFromServer) return;
      return sync(h.file);
    },

    async fsync(path, fd) {
      const h = pendingOf(fd);
      if (h?.writable) await sync(h.file);
    },

    release(path, fd) {
      const h = pendingOf(fd);
      if (h) return releasePending(fd, h.file);
      if (superseded.has(fd)) {
        dropCurrent(fd);
        superseded.delete(fd);
      }
      const kept = holding.get(fd);
      if (kept) {
        holding.delete(fd);
        return releasePending(fd, kept).then(() => read.release(path, fd));
      }
      return read.release(path, fd);
    },

    // XNAT stores no file times, so the mount never shows one it was given: a file shows its
    // resource's time (catalogue/resource-times.ts), or of its last change here while it is
    // being written. Setting the time
    // already shown succeeds, since nothing changes (as chmod and chown). A file created or
    // changed through this mount (and a folder made in files/) accepts any time without keeping
    // it: cp -p, cp -a and rsync -t set the times of every file they write, and refusing would
    // fail the copy over something XNAT keeps for no file. Anything as XNAT has it (touch of an
    // archive file, which opens it O_WRONLY first) is EPERM rather than a time lost at remount.
    // (libfuse 2 calls utimens only when both times are given, and fuse-native passes atime as
    // both: a call setting one time, such as tar -x's, succeeds without reaching xnatfs.)
    async utimens(path, atime, mtime) {
      if (await takesAnyAttributes(path)) return;
      const shown = (await ops.getattr!(path)).mtime.getTime();
      if (atime === shown && mtime === shown) return;
      throw new FsError('EPERM', `${path}: XNAT keeps no file times, so the time of a file already on XNAT cannot be set (it shows when this cache first saw its resource as it is)`);
    },

    // XNAT keeps no permissions or owners. A change to what is already shown (tar -x and cp -a
    // set every file's mode and owner) succeeds, since nothing changes. A file or folder made
    // here accepts any, without keeping it, as utimens does: cp -p and cp -a copy a 600 or 775
    // file's mode, and rsync makes every file as a 600 temporary one. Any other change is EPERM.
    async chmod(path, mode) {
      if (await takesAnyAttributes(path)) return;
      const st = await ops.getattr!(path);
      if ((mode & 0o7777) === (st.mode & 0o7777)) return;
      throw new FsError('EPERM', `chmod ${path} to ${(mode & 0o7777).toString(8)}: XNAT keeps no permissions; files show ${(st.mode & 0o7777).toString(8)}`);
    },

    async chown(path, uid, gid) {
      if (await takesAnyAttributes(path)) return;
      const st = await ops.getattr!(path);
      const unchanged = (asked: number, shown: number): boolean => asked === -1 || asked === 0xffffffff || asked === shown;
      if (unchanged(uid, st.uid) && unchanged(gid, st.gid)) return;
      throw new FsError('EPERM', `chown ${path}: XNAT keeps no owners; everything shows the mounting user (${st.uid}:${st.gid})`);
    },

    async mkdir(path) {
      refuseWrites(path, 'mkdir');
      const parentPath = dirname(path);
      const name = basename(path);
      if (overlay.files.has(path) || overlay.dirs.has(path) || (await serverNode(path))) {
        throw new FsError('EEXIST', `${path}: already exists`);
      }
      checkNewName(path, 'mkdir', null);
      const parentTarget = await targetOfDir(parentPath);
      if (parentTarget) {
        overlay.addDir({ path, target: { ...parentTarget, components: [...parentTarget.components, name] } });
        return;
      }
      const parent = await serverNode(parentPath);
      if (parent?.kind === 'resources') {
        try {
          await ctx.client.createResource(parent.owner, unescapeName(name));
        } catch (err) {
          throw toFsError(err, `mkdir ${path}`);
        } finally {
          ctx.catalogue.invalidateResources(parent.owner);
        }
        return;
      }
      throw new FsError('EACCES', `mkdir ${path}: folders can be made only in a …/resources/ folder (a new XNAT resource) or inside …/resources/<resource>/files/`);
    },

    async rmdir(path) {
      refuseWrites(path, 'rmdir');
      if (overlay.hasChildren(path)) throw new FsError('ENOTEMPTY', `${path}: folder not empty`);
      const local = overlay.dirs.get(path);
      const node = await serverNode(path);
      if (!node) {
        if (!local) throw new FsError('ENOENT', `${path}: no such folder`);
        overlay.removeDir(path);
        return;
      }
      if (node.kind === 'folder') {
        if (node.tree.files.size > 0 || node.tree.dirs.size > 0) throw new FsError('ENOTEMPTY', `${path}: folder not empty`);
        overlay.removeDir(path);
        // files/ of an empty resource stays; a folder emptied by our own deletes goes
        if (node.components.length > 0) ctx.catalogue.forgetFolder(node.owner, node.resource, node.components);
        return;
      }
      if (node.kind === 'resource') {
        const tree = await ctx.catalogue.fileTree(node.owner, node.resource).catch((err: unknown) => {
          throw toFsError(err, path);
        });
        if (tree.files.size > 0 || tree.dirs.size > 0 || overlay.hasChildren(`${path}/files`)) {
          throw new FsError('ENOTEMPTY', `${path}: resource not empty`);
        }
        try {
          await ctx.client.deleteResource(node.owner, node.resource.id);
        } catch (err) {
          ctx.catalogue.invalidateResources(node.owner);
          throw toFsError(err, `rmdir ${path}`);
        }
        ctx.catalogue.forgetResource(node.owner, node.resource);
        return;
      }
      if (node.kind === 'file') throw new FsError('ENOTDIR', `${path}: not a folder`);
      throw new FsError('EACCES', `rmdir ${path}: only resources and folders inside files/ can be removed through the mount`);
    },

    async unlink(path) {
      refuseWrites(path, 'unlink');
      const f = overlay.files.get(path);
      let node = await serverNode(path);
      // Refused before anything here changes: a file still open for writing keeps its writes,
      // which go up at its close as if rm had not been run (as on a disk where unlink fails).
      if (node?.kind === 'file') refuseWideningDelete(`rm ${path}: not deleted`, node);
      written.delete(path);
      if (f) {
        // XNAT may hold a copy the cached listing does not know of only after an upload that
        // failed (it may have landed unanswered) or is being retried: then the listing is read
        // again. An upload that succeeded is in it already. (rm of a file written here cost two
        // listings every time: vim's swap-file probes, at each start.)
        let unsure = f.retrying;
        if (f.idleUpload) clearTimeout(f.idleUpload);
        f.idleUpload = null;
        f.deleted = true;
        f.retrying = false;
        stopAppending(f, 'deleted');
        overlay.removeFile(path);
        // An upload under way may still land: let it end, then delete whatever XNAT has.
        await ctx.uploader.cancel(f.spoolPath);
        while (f.uploading) {
          await f.uploading.catch(() => {
            unsure = true;
          });
        }
        if (f.opens === 0) await unlinkPath(f.spoolPath).catch(() => undefined);
        if (unsure) ctx.catalogue.invalidateFiles(f.target.owner);
        node = await serverNode(path);
        if (!node) return;
      }
      if (!node) throw new FsError('ENOENT', `${path}: no such file`);
      if (node.kind !== 'file') throw new FsError('EISDIR', `${path}: is a folder`);
      try {
        const known = ctx.catalogue.pathsStartingWith(node.owner, node.resource, node.components, node.entry.path);
        await ctx.client.deleteFile(node.owner, node.resource.id, node.entry.path, known);
      } catch (err) {
        ctx.catalogue.invalidateFiles(node.owner, node.resource);
        if (err instanceof XnatError && err.kind === 'conflict') throw new FsError('EPERM', `rm ${path}: ${err.message}`, { cause: err });
        throw toFsError(err, `rm ${path}`);
      }
      ctx.catalogue.forgetFile(node.owner, node.resource, node.components);
      // Without digests in XNAT's listings, a file written here later under this name with as
      // many bytes would share the deleted one's cache key.
      ctx.content.forget(fileRefOf(node));
      held.forget(path);
      keepEmptyParents(path, { owner: node.owner, resourceLabel: node.resource.label, components: node.components });
    },

    async rename(src, dest) {
      refuseWrites(src, 'rename');
      if (src === dest) return;
      const pending = overlay.files.get(src);
      if (dirname(src) === dirname(dest) && FUSE_HIDDEN.test(basename(dest))) {
        if (pending) return unlinkWhileOpen(pending, src, dest);
        // libfuse saw it open, but its last handle was released here meanwhile (vim's swap file:
        // the release and its unlink cross): nothing is left to keep, and a copy uploaded under
        // the hidden name would stay on XNAT, since libfuse unlinks that name only at a release
        // still to come.
        if (held.handlesAt(src).length === 0) return ops.unlink!(src);
        // A file on XNAT open for reading only: its handles read on from a copy here (a disk
        // keeps an unlinked file's bytes), and XNAT's goes at once. It was uploaded under the
        // hidden name instead, to stand on XNAT until the last release, or for good if the mount
        // died first.
        const copy = await pendingForServerFile(src);
        try {
          return await unlinkWhileOpen(copy, src, dest);
        } catch (err) {
          await settle(copy); // unless its handles read it already
          throw err;
        }
      }
      const destTarget = await targetOfDir(dirname(dest));
      const node = pending ? null : await serverNode(src);
      if (!pending && !node && !overlay.dirs.has(src)) throw new FsError('ENOENT', `${src}: no such file`);
      // The old name goes after the upload under the new one: a delete XNAT would widen is
      // refused now, before a copy is left under the new name.
      const onServer = node ?? (await serverNode(src));
      if (onServer?.kind === 'file') refuseWideningDelete(`mv ${src} → ${dest}: not moved`, onServer);
      if (overlay.dirs.has(src) || (node && node.kind !== 'file')) {
        // XNAT cannot move folders or resources; EXDEV makes mv copy and delete instead.
        throw new FsError('EXDEV', `rename ${src}: folders are moved by copying`);
      }
      if (!destTarget) throw new FsError('EXDEV', `rename ${src} → ${dest}: destination is not inside a resource's files/`);
      const destNode = await serverNode(dest);
      if (destNode && destNode.kind !== 'file') throw new FsError('EISDIR', `${dest}: is a folder`);
      const target: Target = { ...destTarget, components: [...destTarget.components, basename(dest)] };
      // EXDEV, not EINVAL: mv reads EINVAL from rename(2) as "a subdirectory of itself"; on
      // EXDEV it copies, and its create gets the EINVAL it then reports as such.
      checkNewName(dest, `rename ${src} →`, target, 'EXDEV');
      // mv x x.1: once x.1 is uploaded, XNAT's delete of x would take it too.
      if (
        onServer?.kind === 'file' && ownerKey(onServer.owner) === ownerKey(target.owner) && onServer.resource.label === target.resourceLabel &&
        relPath(target) !== onServer.entry.path && relPath(target).startsWith(onServer.entry.path)
      ) {
        throw new FsError('EPERM', `mv ${src} → ${dest}: not moved: XNAT deletes by prefix, and deleting the old name would also remove the new one; copy it (cp), or rename it in the XNAT web UI`);
      }
      // The bytes are uploaded under the new name first (rename(2) is expected to be durable when
      // it returns); only once XNAT has them does the old name go. A failure leaves src as it was.
      const f = pending ?? (await pendingForServerFile(src));
      stopAppending(f, `renamed to ${dest}`);
      while (f.uploading) await f.uploading.catch(() => undefined);
      await populate(f);
      const wasDirty = f.dirty;
      f.dirty = false; // writes arriving during the upload set it again
      const srcTarget = f.target;
      // An upload of this file like any other: a flush meanwhile waits for it (and then finds the
      // file clean, or dirty again if it failed), and the last release does not drop the spool.
      // Its time is that of its last change, as at its own upload (rename(2) keeps a file's time).
      const moving = ctx.uploader.upload({
        owner: target.owner, resource: target.resourceLabel, path: relPath(target), spoolPath: f.spoolPath,
        size: f.size, overwrite: destNode !== null, displayPath: dest, ...(destNode?.kind === 'file' ? { replaces: fileRefOf(destNode) } : {}),
        changedAt: f.mtime.getTime(),
      });
      f.uploading = moving;
      const failure = await moving.then(
        () => null,
        (err: unknown) => {
          f.dirty ||= wasDirty;
          return err;
        },
      );
      if (f.uploading === moving) f.uploading = null;
      if (failure !== null) {
        await settle(f); // nobody holds it and nothing is left to upload (a server file's copy)
        throw toFsError(failure, `rename ${src} → ${dest}: upload under the new name`);
      }
      await ctx.uploader.cancel(f.spoolPath); // a retry of the old name must not land later
      f.retrying = false;
      if (f.idleUpload) clearTimeout(f.idleUpload);
      f.idleUpload = null;
      const displaced = overlay.files.get(dest);
      if (displaced && displaced !== f) {
        displaced.deleted = true;
        stopAppending(displaced, `replaced by ${src}`);
        overlay.removeFile(dest);
        await ctx.uploader.cancel(displaced.spoolPath);
        await settle(displaced);
      }
      overlay.removeFile(src);
      // Written here under its old name, it is still under the new one.
      if (written.delete(src)) f.changed = true;
      written.delete(dest);
      f.path = dest;
      f.target = target;
      f.overwrite = true;
      overlay.addFile(f);
      followRename(src, dest);
      // Whatever XNAT holds under the old name (the original, or an upload of it that landed) goes.
      ctx.catalogue.invalidateFiles(srcTarget.owner);
      const old = await serverNode(src);
      if (old?.kind === 'file') {
        try {
          await ctx.client.deleteFile(old.owner, old.resource.id, old.entry.path);
        } catch (err) {
          ctx.catalogue.invalidateFiles(srcTarget.owner);
          if (!(err instanceof XnatError && err.kind === 'not-found')) {
            // XNAT has it under the new name: nothing is left to upload, and a spool file left
            // behind would be reported by every later mount as a write a killed mount lost.
            await settle(f);
            throw toFsError(err, `removing ${src} after copying it to ${dest}`);
          }
        }
        // As in unlink. Recorded, not listed again: the next listing would otherwise give every
        // file of the resource a new time (a file made here and renamed, as rsync's temporary
        // file is, leaves the time its upload under the new name gave).
        ctx.catalogue.forgetFile(old.owner, old.resource, old.components);
        ctx.content.forget(fileRefOf(old));
      }
      await settle(f);
    },
  };

  /**
   * Failures that no retry can mend. Not 401: a session refused even after logging in again (a
   * --jsession that expired, a password changed or an account locked meanwhile) says nothing
   * about the file, and the next mount, logged in afresh, takes its upload up.
   */
  function isPermanent(err: unknown): boolean {
    return err instanceof XnatError && (err.kind === 'forbidden' || err.kind === 'bad-request');
  }

  /**
   * libfuse keeps a file unlinked while still open under `.fuse_hidden…` until its last release,
   * then unlinks that name: vim's swap file, whose release the kernel sends after vim's unlink.
   * Such a file is gone as unlink makes it go, on XNAT at once, and stays only for the handles
   * still open on it. Uploaded under the hidden name, it stood on XNAT until the release, and the
   * resource's next listing gave every file a new time (vim's next run refused to write: W11).
   */
  async function unlinkWhileOpen(f: PendingFile, src: string, hidden: string): Promise<void> {
    await populate(f); // its handles may still read it, and XNAT's copy goes now
    // Read handles opened before it was written here, or on XNAT's copy: they read the spool.
    for (const fd of held.handlesAt(src)) {
      if (holding.has(fd)) continue;
      dropCurrent(fd);
      superseded.set(fd, null);
      holding.set(fd, f);
      f.opens++;
    }
    await ops.unlink!(src);
    held.move(src, hidden);
    if (f.opens === 0) return; // released meanwhile: unlink dropped it all
    f.path = hidden;
    overlay.addFile(f); // for fstat and readdir until the release, which drops it (settle)
  }

  /**
   * XNAT deletes by prefix: deleting `scan.nii` would take `scan.nii.gz` with it. The client
   * refuses such a delete too, but by then unlink or rename would have dropped the file's
   * pending writes (a file open for writing) or uploaded it under the new name: EPERM first.
   */
  function refuseWideningDelete(what: string, node: FileNode): void {
    const known = ctx.catalogue.pathsStartingWith(node.owner, node.resource, node.components, node.entry.path);
    const others = (known ?? []).filter((p) => p !== node.entry.path);
    if (others.length === 0) return;
    throw new FsError('EPERM', `${what}: XNAT deletes by prefix and would also remove ${others.slice(0, 3).join(', ')}${others.length > 3 ? ' …' : ''}; delete it in the XNAT web UI`);
  }

  /** After deleting a file, its folders stay visible (empty) until rmdir, as on a disk. */
  function keepEmptyParents(filePath: string, t: Target): void {
    let dir = dirname(filePath);
    for (let depth = t.components.length - 1; depth > 0; depth--) {
      if (!overlay.dirs.has(dir)) overlay.addDir({ path: dir, target: { ...t, components: t.components.slice(0, depth) } });
      dir = dirname(dir);
    }
  }

  if (ctx.readOnly) log('read-only mount: every write answers EROFS');

  return {
    // Read-only: only the read side is registered, and the mount is `ro`, so the kernel answers
    // EROFS itself and close() costs no flush round trip (one of five per small file read).
    ops: ctx.readOnly ? read : ops,
    overlay,
    onUploaded(job) {
      // Without digests in XNAT's listings the old and new version can share a cache key. The
      // listing may also show an earlier upload of ours already (a file flushed twice).
      if (job.replaces) ctx.content.forget(job.replaces);
      const listed = ctx.catalogue.peekFile(job.owner, job.resource, job.path);
      if (listed) ctx.content.forget(fileRefOf(listed));
      // An upload that followed the writes was made before the last of them: the time shown now.
      const f = overlay.files.get(job.displayPath);
      const changedAt = f && f.spoolPath === job.spoolPath ? f.mtime.getTime() : job.changedAt;
      ctx.catalogue.noteUploaded(job.owner, job.resource, { ...job, ...(changedAt !== undefined ? { changedAt } : {}) });
      // The entry put into the listing has no digest, so its key is (URI, size, ""): bytes an
      // earlier upload of this path with as many bytes left under that key (in this mount before
      // the listing was read again, or in an earlier one) would be served for the new version.
      const now = ctx.catalogue.peekFile(job.owner, job.resource, job.path);
      if (now && now.entry !== listed?.entry) ctx.content.forget(fileRefOf(now));
    },
    async finishWrites(deadline) {
      unmounting = true;
      for (const f of overlay.files.values()) {
        if (!f.idleUpload) continue;
        clearTimeout(f.idleUpload);
        f.idleUpload = null;
        // sync() hands the job to the uploader before its first await: the drain that follows sees it.
        if (f.opens === 0) syncAfterClose(f);
      }
      // A file unlinked while still open (a program's scratch file) goes nowhere: not waited for.
      const writers = (): PendingFile[] => [...new Set([...spoolHandles.values()].filter((h) => h.writable && !h.file.deleted).map((h) => h.file))];
      const writing = writers();
      while (writers().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const left = writers();
      // Nor reported (exit status 3), nor left in the spool, where the next mount would call it a
      // partly written file of a killed mount. No release will come for it either.
      for (const f of new Set([...spoolHandles.values()].map((h) => h.file))) {
        if (!f.deleted) continue;
        await closeSpool(f);
        await unlinkPath(f.spoolPath).catch(() => undefined);
      }
      // A file closed during the wait is uploaded as it is. At a job's end the scheduler's
      // SIGTERM reaches the program writing it too, and a killed cp's descriptor is closed by
      // the kernel like any other: the file went up cut short without a word. Nothing tells a
      // kill from a finished write here, so each such file gets one line with its size.
      for (const f of writing) {
        if (left.includes(f) || f.deleted) continue;
        console.error(`xnatfs: ${f.path} was still being written when the unmount began; it was closed at ${f.size} bytes and is uploaded as it is: if the program writing it was killed (a batch system's SIGTERM reaches every process of the job), it is cut short on XNAT: compare its size and copy it again`);
      }
      for (const f of left) {
        stopAppending(f, 'unmounting');
        // No release will come for it: its bytes stay in the spool, its descriptor goes.
        await closeSpool(f);
      }
      return left.map((f) => ({ displayPath: f.path, spoolPath: f.spoolPath, lastError: 'still open for writing by a program at unmount' }));
    },
  };
}
