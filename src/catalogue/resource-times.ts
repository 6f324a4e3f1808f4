// File times that stay put across mounts. XNAT lists no file times (a HEAD per file would cost a
// request each), so a resource's files show when this cache first saw the resource as it is now:
// the same on every mount while nothing in it changes, a later time once a file in it was added,
// replaced or removed. With the time of mounting instead, make, snakemake and `rsync -a` took
// every file on XNAT for new after each mount (rsync fetched all of them again).
//
// One small JSON file per server's cache folder, written a few seconds after a change (atomic
// rename, merged with what other mounts sharing the folder wrote meanwhile) and at unmount.
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import createDebug from 'debug';
import type { FileEntry } from '../xnat/types.js';
import { Fingerprint } from './file-tree.js';

const log = createDebug('xnatfs:catalogue');

/** Resources remembered; past this the ones with the oldest times are forgotten (they show a new time). */
const MAX_ENTRIES = 50_000;
const SAVE_AFTER_MS = 5_000;
/**
 * Changes kept pending per resource. Past this (rm -r of a large resource) they are dropped and
 * XNAT's next listing shows a new time: the file would otherwise carry them, rewritten at every
 * save, for as long as the resource is remembered.
 */
const MAX_PENDING_FILES = 10_000;
/** A temporary file of a save older than this was left by a process that died. */
const STALE_TEMPORARY_MS = 10 * 60_000;
/** The largest time a Date holds. */
const MAX_DATE_MS = 8.64e15;

/** A file as a fingerprint counts it. */
export type Counted = Pick<FileEntry, 'path' | 'size' | 'digest'>;

/**
 * Changes made through this mount since the listing `base` was seen. Their next listing is known
 * but for the MD5 XNAT computes of each upload: when a listing comes (here or at a later mount)
 * that is `base` with exactly these changes, its files keep the time of the change. Otherwise an
 * upload would change its resource's time twice, and make rebuild once more.
 */
interface Pending {
  base: string;
  t: number;
  /** Uploaded here: path → size, and the listed file it replaced (null: none). */
  uploads: Record<string, { size: number; replaced: Counted | null }>;
  /** Listed files removed here. */
  removed: Counted[];
}

interface Seen {
  /** Fingerprint of the listing (file-tree.ts). */
  fp: string;
  /** ms since the epoch. */
  t: number;
  pending?: Pending;
  /** Changes this process made, for the time a removal of a file it made leaves (see noteRemoved). */
  recent?: Recent;
}

/**
 * The time the files showed before this process changed the resource (`base`), of its last
 * removal of a file it did not make (`removedAt`), and of its last upload of each file still there
 * (`made`: a file new to the resource, not one uploaded before these were recorded).
 */
interface Recent {
  base: number;
  removedAt: number;
  uploads: Map<string, { t: number; made: boolean }>;
}

export class ResourceTimes {
  private readonly seen = new Map<string, Seen>();
  /** Changed here since the last save: what a save must not lose to another mount's file. */
  private readonly changed = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private saving: Promise<void> = Promise.resolve();
  /**
   * Resources whose pending changes another mount made, taken from its save after this mount had
   * shown them a time: not this mount's changes, and perhaps older than what it showed (see save).
   */
  private readonly foreign = new Set<string>();
  /** The file as this process last read or wrote it: when it still is, there is nothing to merge. */
  private lastSeenFile = '';

  /** `file`: where to keep them (null: this process only). */
  constructor(
    private readonly file: string | null,
    private readonly now: () => number = Date.now,
  ) {}

  /** Read what earlier mounts saw. A missing or unreadable file means nothing was seen yet. */
  async load(): Promise<void> {
    for (const [key, s] of await this.read()) if (!this.seen.has(key)) this.seen.set(key, s);
    await this.removeStaleTemporaries();
  }

  /** Saves a killed process left half-done (written aside, never renamed); another mount's is seconds old at most. */
  private async removeStaleTemporaries(): Promise<void> {
    if (this.file === null) return;
    const dir = dirname(this.file);
    const prefix = `${basename(this.file)}.`;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
      const path = join(dir, name);
      const st = await stat(path).catch(() => null);
      if (st && Date.now() - st.mtimeMs > STALE_TEMPORARY_MS) await unlink(path).catch(() => undefined);
    }
  }

  /**
   * The time for the files of resource `key`, whose listing now has fingerprint `fp`; `find`
   * gives a file of that listing by path (for changes made here, see Pending).
   */
  timeOf(key: string, fp: string, find?: (path: string) => Counted | undefined): number {
    const s = this.seen.get(key);
    if (s && s.fp === fp && !s.pending) return s.t;
    // Any listing ends what is pending, also one like its base (an upload of the bytes XNAT had):
    // kept, the pending uploads would pass anyone's later same-size change of them off as ours.
    const ours = s?.pending && find && !this.foreign.has(key) ? expectedAfter(s.pending, find) === fp : false;
    return this.record(key, { fp, t: ours ? s!.pending!.t : this.later(s), ...(ours && s!.recent ? { recent: s!.recent } : {}) });
  }

  /**
   * A file was uploaded here into resource `key`, whose listing as this mount holds it has
   * fingerprint `fp` ('' while it has changes XNAT has not listed yet); `replaced` is the listed
   * file it replaced. Returns the time its files show now.
   */
  noteUpload(key: string, fp: string, file: { path: string; size: number; changedAt?: number }, replaced: Counted | null): number {
    const s = this.seen.get(key);
    // The time the file was last changed here, which it showed until now: a later one would
    // change its time again once uploaded (vim, reading it right after, refused to write it).
    const t = this.later(s, file.changedAt);
    const own = this.foreign.has(key) ? undefined : s?.pending;
    // Made here: new to the resource, and not uploaded before this process recorded its changes.
    const before = s?.recent?.uploads.get(file.path);
    const made = before ? before.made : replaced === null && !(own && file.path in own.uploads);
    const recent: Recent | undefined = s ? { base: s.t, removedAt: 0, uploads: new Map(), ...s.recent } : undefined;
    recent?.uploads.set(file.path, { t, made });
    // Past this (cp of a large folder) removals here simply show a new time.
    if (recent && recent.uploads.size > MAX_PENDING_FILES) {
      recent.uploads.clear();
      recent.removedAt = t;
    }
    const pending = own ?? (fp !== '' ? { base: fp, t, uploads: noPrototype(), removed: [] } : undefined);
    if (pending) {
      // Uploaded twice: what the first upload replaced is still what XNAT no longer has.
      // (A new file's first upload replaced nothing: `?? replaced` took our own first upload,
      // never listed in `base`, for what the second replaced, and no listing matched again.)
      const first = pending.uploads[file.path];
      pending.uploads[file.path] = { size: file.size, replaced: first ? first.replaced : replaced };
      pending.t = t;
    }
    return this.record(key, { fp: s?.fp ?? '', t, ...(pending && bounded(pending) ? { pending } : {}), ...(recent ? { recent } : {}) });
  }

  /** A listed file (or one uploaded here) was removed from resource `key` while uploads are pending. */
  noteRemoved(key: string, file: Counted): number {
    const s = this.seen.get(key);
    const t = this.later(s);
    const pending = this.foreign.has(key) ? undefined : s?.pending;
    if (pending) {
      const upload = pending.uploads[file.path];
      if (upload) {
        if (upload.replaced) pending.removed.push(upload.replaced);
        delete pending.uploads[file.path];
      } else {
        pending.removed.push(file);
      }
      pending.t = t;
    }
    const back = this.afterRemoval(s?.recent, file.path, t);
    if (pending) pending.t = back.t;
    return this.record(key, { fp: s?.fp ?? '', ...back, ...(pending && bounded(pending) ? { pending } : {}) });
  }

  /**
   * A file of resource `key` was removed here, from a listing with XNAT's fingerprint (the listing
   * without it is `fp`). Returns the time its files show now.
   */
  noteRemovedListed(key: string, fp: string, file: Counted): number {
    const recent = this.seen.get(key)?.recent;
    const t = this.timeOf(key, fp);
    const back = this.afterRemoval(recent, file.path, t);
    const cur = this.seen.get(key)!;
    return this.record(key, { fp: cur.fp, ...back, ...(cur.pending ? { pending: cur.pending } : {}) });
  }

  /**
   * The time after a removal here that would otherwise show `t`. A file this process made and
   * now removes (vim's .swp/.swx probes and its 4913 test file, made and removed at once; its swap
   * file at exit) leaves the resource as its other changes made it: its files show the time of
   * the latest of those still standing, or the time before them. A new time made vim refuse to
   * write ("The file has been changed since reading it"), and `vim -es` or `ex` in a script exit 0
   * without writing; after a `:wq` the next vim run did, the kernel having kept the earlier time.
   */
  private afterRemoval(recent: Recent | undefined, path: string, t: number): { t: number; recent?: Recent } {
    if (!recent) return { t };
    // Changed in place, as noteUpload does: a copy of the map per removal made `rm -r` of N files
    // uploaded here cost N copies of up to N entries.
    const made = recent.uploads.get(path)?.made === true;
    recent.uploads.delete(path);
    if (!made) {
      recent.removedAt = t;
      return { t, recent };
    }
    let back = Math.max(recent.base, recent.removedAt);
    for (const u of recent.uploads.values()) back = Math.max(back, u.t);
    return { t: back, recent };
  }

  /**
   * Resource `key` was deleted through this mount. XNAT never gives its numeric id to another
   * resource, so nothing would ask for its time again: kept, every mkdir + rmdir (a pipeline's
   * scratch resource) left an entry, and the whole file is rewritten at every save (a soak's
   * mkdir/cp/rm/rmdir loop grew it by an entry a cycle, up to MAX_ENTRIES).
   */
  forget(key: string): void {
    if (!this.seen.delete(key)) return;
    this.foreign.delete(key);
    this.changed.add(key); // so a save does not take it back from the file (see save)
    this.saveSoon();
  }

  /**
   * A change must show a later time than the one it replaces, or make misses it: also when the
   * clock went back. (By 1 ms, not to the next second: many changes in a second, as `rm -r`
   * through this mount makes, would push the times ever further into the future.)
   */
  private later(s: Seen | undefined, at = this.now()): number {
    return s ? Math.max(at, s.t + 1) : at;
  }

  private record(key: string, s: Seen): number {
    this.seen.set(key, s);
    this.foreign.delete(key);
    this.changed.add(key);
    this.saveSoon();
    return s.t;
  }

  /** Write what changed now (at unmount). Never throws: losing the times costs only a re-copy. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.saving = this.saving.then(() => this.save());
    await this.saving;
  }

  private saveSoon(): void {
    if (this.file === null || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.saving = this.saving.then(() => this.save());
    }, SAVE_AFTER_MS);
    this.timer.unref();
  }

  private async save(): Promise<void> {
    if (this.file === null || this.changed.size === 0) return;
    const mine = new Set(this.changed);
    this.changed.clear();
    // Another mount of this server may have saved meanwhile: take its entries, ours win, except
    // where it first saw the very same listing earlier: that earlier time is the one its programs
    // built from, and ours would make them take every file for new at the next mount.
    if ((await this.fileState()) !== this.lastSeenFile) {
      for (const [k, s] of await this.read()) {
        const own = this.seen.get(k);
        if (!mine.has(k) || (own && own.fp === s.fp && s.t < own.t)) {
          // Another listing, seen on a host whose clock is behind: here it must still show a time
          // later than the one this mount showed for what it replaced, or make would miss it.
          this.seen.set(k, own && own.fp !== s.fp && s.t <= own.t ? { ...s, t: own.t + 1 } : s);
          // Another mount's pending changes, here where the resource already showed a time (maybe
          // later than theirs): matched here, they gave XNAT's listing of them that older time.
          // Kept in the file for the next mount, which has shown nothing yet.
          const readBack = own?.pending && own.fp === s.fp && own.t === s.t;
          if (own && s.pending && !readBack) this.foreign.add(k);
          else if (!readBack) this.foreign.delete(k);
        }
      }
    }
    if (this.seen.size > MAX_ENTRIES) {
      const oldest = [...this.seen].sort((a, b) => a[1].t - b[1].t).slice(0, this.seen.size - MAX_ENTRIES);
      for (const [k] of oldest) {
        this.seen.delete(k);
        this.foreign.delete(k);
      }
    }
    const tmp = `${this.file}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const resources: Record<string, [string, number] | [string, number, Pending]> = {};
      for (const [k, s] of this.seen) resources[k] = s.pending ? [s.fp, s.t, s.pending] : [s.fp, s.t];
      await writeFile(tmp, JSON.stringify({ v: 1, resources }), { mode: 0o600 });
      await rename(tmp, this.file);
      this.lastSeenFile = await this.fileState();
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      log('could not save file times to %s: %s', this.file, (err as Error).message);
    }
  }

  private async read(): Promise<Map<string, Seen>> {
    const out = new Map<string, Seen>();
    if (this.file === null) return out;
    try {
      this.lastSeenFile = await this.fileState();
      const data = JSON.parse(await readFile(this.file, 'utf8')) as { v?: number; resources?: Record<string, unknown> };
      for (const [k, v] of Object.entries(data.resources ?? {})) {
        // Only times a Date can hold: another number showed every file of the resource at 1970.
        if (Array.isArray(v) && typeof v[0] === 'string' && typeof v[1] === 'number' && v[1] >= 0 && v[1] <= MAX_DATE_MS) {
          const pending = asPending(v[2]);
          out.set(k, { fp: v[0], t: v[1], ...(pending ? { pending } : {}) });
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log('ignoring file times in %s: %s', this.file, (err as Error).message);
    }
    return out;
  }

  /** Size, time and inode of the file ('' if there is none): changed when another mount saved. */
  private async fileState(): Promise<string> {
    const st = await stat(this.file!).catch(() => null);
    return st ? `${st.size}:${st.mtimeMs}:${st.ino}` : '';
  }
}

function bounded(p: Pending): boolean {
  return p.removed.length + Object.keys(p.uploads).length <= MAX_PENDING_FILES;
}

/** The fingerprint XNAT's listing has once it shows exactly the pending changes (null: it cannot). */
function expectedAfter(p: Pending, find: (path: string) => Counted | undefined): string | null {
  let fp = p.base;
  for (const r of p.removed) fp = Fingerprint.without(fp, r);
  for (const [path, u] of Object.entries(p.uploads)) {
    const listed = find(path);
    if (!listed || listed.size !== u.size) return null;
    if (u.replaced) fp = Fingerprint.without(fp, u.replaced);
    fp = Fingerprint.with(fp, listed); // with XNAT's MD5 of it
  }
  return fp;
}

function isCounted(x: unknown): x is Counted {
  const c = x as Counted;
  return typeof c === 'object' && c !== null && typeof c.path === 'string' && typeof c.size === 'number' && typeof c.digest === 'string';
}

/** A Pending read back from the file, or undefined when it is not one (a damaged file). */
function asPending(x: unknown): Pending | undefined {
  const p = x as Pending;
  if (typeof p !== 'object' || p === null || typeof p.base !== 'string' || typeof p.t !== 'number' || !(p.t >= 0 && p.t <= MAX_DATE_MS)) return undefined;
  if (!Array.isArray(p.removed) || !p.removed.every(isCounted) || typeof p.uploads !== 'object' || p.uploads === null) return undefined;
  for (const u of Object.values(p.uploads)) {
    if (typeof u !== 'object' || u === null || typeof u.size !== 'number' || !(u.replaced === null || isCounted(u.replaced))) return undefined;
  }
  return { base: p.base, t: p.t, uploads: Object.assign(noPrototype(), p.uploads), removed: [...p.removed] };
}

/** Keyed by file paths: a file named `__proto__` must stay a key. */
function noPrototype(): Pending['uploads'] {
  return Object.create(null) as Pending['uploads'];
}
