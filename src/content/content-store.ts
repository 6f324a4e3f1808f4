// File bytes for open handles: from memory or the disk cache when present, otherwise from a
// download that readers follow as it arrives. One download per file however many handles read it.
// Prefetch: once a second file of the same folder is opened (dcm2niix, cp -r, find -exec cat
// read folders through), the rest of the folder is fetched: many small files as one zip of the
// resource, whose members land in memory (and on disk later, when the mount is quiet), otherwise
// file by file in parallel into the disk cache.
import { createHash } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import createDebug from 'debug';
import { LRUCache } from 'lru-cache';
import pLimit, { type LimitFunction } from 'p-limit';
import { XnatError, type FileRef, type Owner, type ReadResult, type XnatApi } from '../xnat/types.js';
import { Arrival } from './arrival.js';
import { DiskCache } from './disk-cache.js';
import { Download, type DownloadOptions, type FirstSource } from './download.js';
import { WriteBehind } from './write-behind.js';
import { standalone } from './buffers.js';
import { fetchZipMembers, type WantedMember } from './zip-prefetch.js';

const log = createDebug('xnatfs:content');

export interface PrefetchOptions {
  enabled: boolean;
  /** Downloads running at once for prefetch (foreground reads are not limited by this). */
  concurrency: number;
  /** Files larger than this are never prefetched. */
  maxFileBytes: number;
  /** Bytes one folder's prefetch may queue. */
  maxFolderBytes: number;
  /** At least this many files to prefetch: fetch the resource as one zip instead of file by file. */
  zipMinFiles: number;
  /** …if the whole resource (the zip holds all of it) is at most this large. */
  zipMaxBytes: number;
  /**
   * Deflate level asked of XNAT for those zips (0 = stored). XNAT deflates on the fly on one
   * core, slower than a campus network; DICOM only halves or so. Higher pays on slow links.
   */
  zipCompression: number;
  /** Larger files wait for a program to read one through (default LARGE_PREFETCH_BYTES). */
  largeFileBytes?: number;
}

/** What the fs layer tells the store about the folder a file was opened in. */
export interface FolderContext {
  key: string;
  /** The folder's files in listing order (from memory, no request). */
  siblings: () => FileRef[];
  /** Every file of its resource, other folders' too (from memory, no request). */
  resourceFiles?: () => FileRef[];
  /** The resource the folder belongs to, and the bytes of all its files (what its zip carries). */
  resource: { owner: Owner; id: string; totalBytes: number };
}

export interface ContentStoreOptions {
  server: string;
  cache: DiskCache;
  download: DownloadOptions;
  prefetch: PrefetchOptions;
  /** Bound on small files kept in memory (default 64 MiB). */
  memoryBytes?: number;
  /** When a download nobody reads any more is stopped (default: ABANDON). */
  abandon?: AbandonOptions;
  /** A zip silent this long while a program waits for one of its members is given up (default: MEMBER_STALL_MS). */
  memberStallMs?: number;
}

/**
 * XNAT ignores Range, so the first read of a file starts a download of all of it. Once no program
 * reads it any more (`head -c`, `file`, a header probe closed the file), a download with more
 * than `remainingBytes` still to come is stopped after `afterMs` without a new reader: probing
 * 100 large NIfTI files otherwise fetched every one of them, and those downloads held the
 * connections the next probes needed. A program that closes and reopens a file within `afterMs`
 * (sniff, then read) keeps it.
 */
export interface AbandonOptions {
  remainingBytes: number;
  afterMs: number;
}
const ABANDON: AbandonOptions = { remainingBytes: 16 * 2 ** 20, afterMs: 2000 };

type Gate = <T>(fn: () => Promise<T>) => Promise<T>;

/** Handles answer at once when memory has the bytes: no promise per kernel request. */
type MaybePromise<T> = T | Promise<T>;

interface Active {
  download: Download;
  refs: number;
  /** Cached under this key once complete (false: too large for the cache, delete when unused). */
  committed: boolean | null;
  /** Of a version our own upload replaced meanwhile (forget()): not kept once complete. */
  superseded?: boolean;
  /** Stops the download unless a reader comes back (see AbandonOptions). */
  abandonTimer?: NodeJS.Timeout;
}

/** A resource's zip asked for before its members were chosen (see ContentStore.prefetchFolder). */
interface EarlyZip {
  body: Promise<Readable>;
  abort(): void;
  /** When it was asked for, then when its last bytes came (performance.now()). */
  seen: { at: number };
}

/**
 * A small file on its way in a zip, with the zip: a program waiting for the member gives up on a
 * zip that has sent nothing for a while (see ContentStore.memberOrNull).
 */
class Member extends Arrival<Buffer> {
  constructor(readonly zip: Pick<EarlyZip, 'seen' | 'abort'>) {
    super();
  }
}

/**
 * A zip that has sent nothing for this long while a program waits for one of its members is
 * given up: that file is fetched at once, the rest of the folder file by file. XNAT builds zips
 * on the fly: one that hung before its first byte held a reader for the 60 s response timeout,
 * one that stalled halfway for the 120 s body timeout.
 */
const MEMBER_STALL_MS = 5000;

/** A small file from a zip waiting to be checked against the listing and kept. */
interface UncheckedMember {
  ref: FileRef;
  arrival: Member;
  data: Buffer;
}

/**
 * Zip members waiting to be checked in the background, in bytes: past this, each is checked as it
 * arrives. (The zip's own backpressure then applies: the members checked go to the write-behind.)
 */
const UNCHECKED_BYTES = 16 * 2 ** 20;
/** Members checked per turn of the event loop: FUSE requests get a turn in between. */
const CHECKED_PER_TURN = 16;

/** Bound on the remembered cache keys (~250 bytes each). */
const KEYS_REMEMBERED = 100_000;

/** Files up to this size are also kept whole in memory once fetched. */
const SMALL_FILE_BYTES = 1024 * 1024;

type Handle =
  | { kind: 'memory'; buf: Buffer }
  | { kind: 'cached'; key: string; fh: FileHandle }
  | { kind: 'download'; key: string; active: Active }
  /** A small file on its way in a prefetch zip. */
  | { kind: 'incoming'; key: string; ref: FileRef; member: Member }
  | { kind: 'empty' };

interface FolderState {
  opened: Set<string>;
  prefetched: boolean;
  /** When the folder was last listed (0: never). */
  listedAt: number;
  /** Order of listing, to read folders ahead in the order a walk listed them. */
  listedSeq: number;
  /** What the fs layer told about the folder, when it was listed or a file in it opened. */
  context: FolderContext | null;
  /** Its prefetch's transfers have ended. */
  prefetchDone: boolean;
  /** The next listed folder was read ahead from here. */
  readAheadFrom: boolean;
  /** Listings seen when no folder to read ahead was found from here (look again after more). */
  readAheadSeen: number;
  /** Large files the prefetch leaves until a program reads one of them through (LARGE_PREFETCH_BYTES). */
  deferred: FileRef[];
  /** A program read past LARGE_PREFETCH_BYTES into a file here: it is not just probing headers. */
  readThrough: boolean;
}

/**
 * Files larger than this are prefetched with their folder only once a program has read past this
 * far into one of the folder's files. Header probes (`head -c`, `file`, `fslhd`, nibabel's
 * header read) open every large file of a folder and read a few kB of each: fetching the rest of
 * the folder then moved up to 1 GiB for nothing. A large file costs one round trip of latency
 * next to its transfer, so waiting for the signal costs a reader little.
 */
const LARGE_PREFETCH_BYTES = 16 * 2 ** 20;

/** Zip members wait this long after the last open or read before they are written to disk. */
const WRITE_BEHIND_IDLE_MS = 100;

/** A file opened this soon after its folder was listed starts the folder's prefetch at once. */
const LISTED_THEN_OPENED_MS = 10_000;

/**
 * Read-ahead across folders: while a program reads one folder that it listed (find, dcm2niix on
 * a whole session, cp -r), the next folder it listed within this long is fetched once the current
 * one's transfers have ended, if it holds at most READ_AHEAD_MAX_BYTES.
 */
const READ_AHEAD_LISTED_MS = 120_000;
const READ_AHEAD_MAX_BYTES = 128 * 2 ** 20;

export class ContentStore {
  private readonly handles = new Map<number, Handle>();
  /**
   * Cache keys already hashed: a folder's prefetch keys every file, and its zip and each open
   * key them again. Three SHA-256 per file took 36 ms of main thread in a cold read of 2,000 files.
   */
  private readonly keys = new Map<string, string>();
  private readonly active = new Map<string, Active>();
  /** Prefetches whose files are still to be chosen (see prefetchFolder), with their resource's id. */
  private readonly unchosen = new Map<() => void, string>();
  private readonly folders = new Map<string, FolderState>();
  /** Large files opened, by cache key, with their folder: reading far into one starts its deferred prefetch. */
  private readonly largeOpened = new Map<string, FolderState>();
  private readonly largeFileBytes: number;
  private listedSeq = 0;
  private readonly prefetchLimit: LimitFunction;
  /**
   * Small whole files in memory: reading a DICOM slice then costs a copy instead of an open, a
   * read and a close on the disk thread pool, which dominate once the network is hidden.
   */
  private readonly memory: LRUCache<string, Buffer>;
  /** Small files coming in a zip being received (rejected when the zip does not deliver them). */
  private readonly incoming = new Map<string, Member>();
  /**
   * Zip members arrived but not yet checked and kept (see acceptLater), by cache key: still in
   * `incoming` meanwhile, and checked at once when a program opens or reads one.
   */
  private readonly unchecked = new Map<string, UncheckedMember>();
  private uncheckedBytes = 0;
  private checking = false;
  private readonly zipsInFlight = new Set<Promise<void>>();
  /**
   * What follows the end of each download (its commit, or the removal of its partial file). A
   * download stopped or failed has left `active` already: idle() must still wait for this.
   */
  private readonly endings = new Set<Promise<void>>();
  private readonly writeBehind: WriteBehind;
  private nextFd = 10;
  private readonly closing = new AbortController();
  stats = { downloads: 0, cacheHits: 0, prefetched: 0, zips: 0, membersChecked: 0 };

  constructor(
    private readonly client: XnatApi,
    private readonly options: ContentStoreOptions,
  ) {
    this.prefetchLimit = pLimit(Math.max(1, options.prefetch.concurrency));
    this.largeFileBytes = options.prefetch.largeFileBytes ?? LARGE_PREFETCH_BYTES;
    const memoryBytes = options.memoryBytes ?? 64 * 1024 * 1024;
    this.memory = new LRUCache<string, Buffer>({ maxSize: memoryBytes, sizeCalculation: (b) => Math.max(1, b.length) });
    this.writeBehind = new WriteBehind(options.cache, { idleMs: WRITE_BEHIND_IDLE_MS, maxPendingBytes: memoryBytes });
  }

  keyOf(ref: FileRef): string {
    // A resource's numeric id is unique on its server whichever path led to it: P/experiments/E
    // and P/subjects/S/experiments/E list the same file under different URIs. A file put into a
    // listing after our upload has no URI ("", see Catalogue.noteUploaded).
    const where = /^\d+$/.test(ref.resource) ? `resource:${ref.resource}/${ref.path}` : (ref.uri || `${JSON.stringify(ref.owner)}/${ref.resource}/${ref.path}`);
    const id = `${where}\n${ref.size}\n${ref.digest}`;
    let key = this.keys.get(id);
    if (key === undefined) {
      key = DiskCache.keyOf({ server: this.options.server, uri: where, size: ref.size, digest: ref.digest });
      if (this.keys.size >= KEYS_REMEMBERED) this.keys.clear();
      this.keys.set(id, key);
    }
    return key;
  }

  /** A handle for `ref`; at once (no promise) when its bytes are in memory or on their way. */
  open(ref: FileRef): MaybePromise<number> {
    const fd = this.nextFd++;
    if (ref.size === 0) {
      this.handles.set(fd, { kind: 'empty' });
      return fd;
    }
    this.writeBehind.touch();
    const key = this.keyOf(ref);
    const inMemory = this.memory.get(key) ?? this.writeBehind.get(key);
    if (inMemory) {
      this.stats.cacheHits++;
      this.handles.set(fd, { kind: 'memory', buf: inMemory });
      return fd;
    }
    if (this.unchosen.size > 0) this.chooseNow();
    if (this.unchecked.size > 0 && this.checkNow(key)) {
      const kept = this.memory.get(key);
      if (kept) {
        this.handles.set(fd, { kind: 'memory', buf: kept });
        return fd;
      }
    }
    const member = this.incoming.get(key);
    if (member) {
      this.handles.set(fd, { kind: 'incoming', key, ref, member });
      return fd;
    }
    return this.openFromCacheOrServer(fd, key, ref);
  }

  private async openFromCacheOrServer(fd: number, key: string, ref: FileRef): Promise<number> {
    const cached = this.options.cache.lookup(key);
    if (cached) {
      try {
        const fh = await open(cached, 'r');
        this.stats.cacheHits++;
        this.handles.set(fd, { kind: 'cached', key, fh });
        return fd;
      } catch {
        this.options.cache.remove(key); // evicted or deleted under us: fetch again
      }
    }
    const active = this.startDownload(key, ref);
    this.attach(active);
    this.handles.set(fd, { kind: 'download', key, active });
    return fd;
  }

  /**
   * Our own upload replaced `ref` on XNAT: drop the bytes kept for it. Needed when XNAT lists no
   * digests, where the old and new version of a file of the same size share a cache key.
   * Handles open on it keep reading the old version (close-to-open).
   */
  forget(ref: FileRef): void {
    this.chooseNow(); // a prefetch still to choose its files would take the old version
    const key = this.keyOf(ref);
    this.memory.delete(key);
    this.writeBehind.drop(key);
    this.options.cache.remove(key);
    // Transfers of the old version under way finish for their readers but are not kept.
    this.incoming.delete(key);
    const active = this.active.get(key);
    if (active) {
      active.superseded = true;
      this.active.delete(key);
    }
  }

  /** Bytes read into `buf`; at once (no promise) from memory. */
  read(fd: number, buf: Buffer, len: number, pos: number): MaybePromise<number> {
    const h = this.handles.get(fd);
    if (!h) throw Object.assign(new Error(`read on unknown handle ${fd}`), { code: 'EBADF' });
    this.writeBehind.touch();
    switch (h.kind) {
      case 'empty':
        return 0;
      case 'memory':
        return pos >= h.buf.length ? 0 : h.buf.copy(buf, 0, pos, Math.min(h.buf.length, pos + len));
      default:
        return this.readSlow(fd, h, buf, len, pos);
    }
  }

  private async readSlow(fd: number, h: Exclude<Handle, { kind: 'empty' | 'memory' }>, buf: Buffer, len: number, pos: number): Promise<number> {
    switch (h.kind) {
      case 'cached': {
        const { bytesRead } = await h.fh.read(buf, 0, len, pos);
        if (pos + bytesRead > this.largeFileBytes) this.noteReadThrough(h.key);
        return bytesRead;
      }
      case 'download': {
        if (this.failedForNow(h.active)) return this.readAgain(fd, h, buf, len, pos);
        const n = await h.active.download.read(buf, len, pos);
        if (pos + n > this.largeFileBytes) this.noteReadThrough(h.key);
        return n;
      }
      case 'incoming': {
        this.checkNow(h.key); // arrived meanwhile, not checked yet
        const data = await this.memberOrNull(h.member);
        // Another read of this handle may have moved it on meanwhile.
        if (this.handles.get(fd) === h) {
          if (data) {
            this.handles.set(fd, { kind: 'memory', buf: data });
          } else {
            // Not in the zip after all: a GET of its own (shared with the fallback prefetch).
            const active = this.startDownload(h.key, h.ref);
            this.attach(active);
            this.handles.set(fd, { kind: 'download', key: h.key, active });
          }
        }
        return this.read(fd, buf, len, pos);
      }
    }
  }

  /**
   * A download that failed, after its own retries, for a reason a later attempt may not meet
   * (XNAT unreachable or failing, a transfer cut off; not a wrong digest). Not one of a version
   * replaced meanwhile (forget), nor one stopped at unmount.
   */
  private failedForNow(active: Active): boolean {
    const err = active.download.error;
    if (!err || active.superseded || this.closing.signal.aborted) return false;
    return !(err instanceof XnatError) || err.kind === 'network' || err.kind === 'server'; // as Download retries
  }

  /**
   * A handle whose download failed reads through a new one, as a new open would: it answered
   * EIO for as long as the program kept it open, XNAT back or not.
   */
  private async readAgain(fd: number, h: Extract<Handle, { kind: 'download' }>, buf: Buffer, len: number, pos: number): Promise<number> {
    if (this.handles.get(fd) !== h) return this.read(fd, buf, len, pos); // another read of it did this
    const failed = h.active;
    const active = this.startDownload(h.key, failed.download.ref);
    this.attach(active);
    this.handles.set(fd, { kind: 'download', key: h.key, active });
    failed.refs--;
    await this.maybeDiscard(h.key, failed);
    return this.read(fd, buf, len, pos);
  }

  /** Frees a handle; at once (no promise) unless a file or a download must be let go. */
  release(fd: number): MaybePromise<void> {
    const h = this.handles.get(fd);
    this.handles.delete(fd);
    if (h?.kind === 'cached') return h.fh.close().catch(() => undefined);
    if (h?.kind === 'download') {
      h.active.refs--;
      if (h.active.refs === 0) this.abandonLater(h.key, h.active);
      return this.maybeDiscard(h.key, h.active);
    }
  }

  /**
   * A large member, or a rejection once the zip has sent nothing for MEMBER_STALL_MS while a
   * program waits for the file (the zip is given up then, as in memberOrNull).
   */
  private unlessStalled(member: Promise<Buffer | Readable>, zip: Pick<EarlyZip, 'seen' | 'abort'>, waitedFor: () => boolean): Promise<Buffer | Readable> {
    const stallMs = this.stallMs;
    return new Promise((resolve, reject) => {
      let settled = false;
      const check = setInterval(() => {
        if (settled || performance.now() - zip.seen.at < stallMs || !waitedFor()) return;
        settled = true;
        clearInterval(check);
        this.giveUp(zip);
        reject(new Error('the zip stalled'));
      }, Math.min(stallMs, 1000));
      check.unref();
      member.then(
        (m) => {
          if (settled) {
            if (!Buffer.isBuffer(m)) m.destroy(); // came after all, too late: nobody reads it
            return;
          }
          settled = true;
          clearInterval(check);
          resolve(m);
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          clearInterval(check);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /** How long a zip may send nothing while a program waits for one of its members. */
  private get stallMs(): number {
    return this.options.memberStallMs ?? MEMBER_STALL_MS;
  }

  /** A zip silent for stallMs while a program waits: aborted, its missing files fetched one by one. */
  private giveUp(zip: Pick<EarlyZip, 'abort'>): void {
    log('a zip sent nothing for %d ms while a program waited for it: given up, its files fetched one by one', this.stallMs);
    zip.abort();
  }

  /** The member's bytes; null if the zip failed to bring them or stalled (see MEMBER_STALL_MS). */
  private async memberOrNull(member: Member): Promise<Buffer | null> {
    const stallMs = this.stallMs;
    const arrived = member.wait().catch(() => null);
    for (;;) {
      const left = member.zip.seen.at + stallMs - performance.now();
      if (left <= 0 && !member.settled) {
        this.giveUp(member.zip);
        return null;
      }
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<'stalled'>((resolve) => (timer = setTimeout(resolve, Math.max(left, 0), 'stalled')));
      const got = await Promise.race([arrived, stalled]);
      clearTimeout(timer);
      if (got !== 'stalled') return got;
    }
  }

  private attach(active: Active): void {
    active.refs++;
    clearTimeout(active.abandonTimer);
    active.abandonTimer = undefined;
  }

  /** The last reader let go of an unfinished download: stop it unless little is left or one returns. */
  private abandonLater(key: string, active: Active): void {
    const { remainingBytes, afterMs } = this.options.abandon ?? ABANDON;
    const left = (): number => active.download.ref.size - active.download.received;
    if (active.download.done || left() <= remainingBytes) return;
    active.abandonTimer = setTimeout(() => {
      active.abandonTimer = undefined;
      if (active.refs > 0 || active.download.done || left() <= remainingBytes) return;
      log('%s: no program reads it any more; download stopped with %d of %d bytes', active.download.ref.path, active.download.received, active.download.ref.size);
      // Its error (aborted) removes it from `active` and deletes the partial file: a later open starts afresh.
      if (this.active.get(key) === active) this.active.delete(key);
      active.download.cancel();
    }, afterMs);
    active.abandonTimer.unref();
  }

  /**
   * Tell the store that `ref` was opened in `folder`. A file opened right after its folder was
   * listed, or the second distinct file opened in a folder, starts the prefetch of the rest: one
   * zip of the resource when there are many files and the resource is small enough, otherwise
   * file by file in parallel.
   */
  noteOpen(folder: FolderContext, ref: FileRef): void {
    const p = this.options.prefetch;
    if (!p.enabled) return;
    const state = this.folderState(folder.key);
    state.context = folder;
    state.opened.add(ref.path);
    if (ref.size > this.largeFileBytes && !state.readThrough) {
      if (this.largeOpened.size >= 10_000) this.largeOpened.clear();
      this.largeOpened.set(this.keyOf(ref), state);
    }
    // A folder fetched ahead is now being read: the next one may follow.
    if (state.prefetchDone) this.readAhead(state);
    // A program that lists a folder and then opens a file in it (dcm2niix, cp -r, find) is
    // reading it through: start at once. Otherwise wait for a second file.
    const walking = Date.now() - state.listedAt < LISTED_THEN_OPENED_MS;
    if (state.prefetched || state.opened.size < (walking ? 1 : 2)) return;
    this.prefetchFolder(state, folder);
  }

  /** Tell the store that a folder was listed (readdir). */
  noteListed(folder: FolderContext): void {
    if (!this.options.prefetch.enabled) return;
    const state = this.folderState(folder.key);
    state.listedAt = Date.now();
    state.listedSeq = ++this.listedSeq;
    state.context = folder;
  }

  /**
   * Fetch the files of a folder not in memory, the cache or on their way yet. The zip, when one is
   * likely, is asked for first, and the rest waits two turns of the event loop: choosing the
   * files keys every one of them (20-40 ms for 2,000 in a fresh process), and undici writes a
   * request on an idle keep-alive connection only from a setImmediate. Done at once, that work
   * held back both the zip's request and the GET of the file just opened.
   */
  private prefetchFolder(state: FolderState, folder: FolderContext): void {
    state.prefetched = true;
    // The same resource by another path (P/experiments/E and P/subjects/S/experiments/E), its
    // files still to be chosen: chosen first, they are on their way here, and no second zip is
    // asked for (then aborted, but XNAT had already begun to send it).
    for (const id of this.unchosen.values()) {
      if (id === folder.resource.id) {
        this.chooseNow();
        break;
      }
    }
    const zip = this.zipLikely(state, folder) ? this.requestZip(folder.resource) : null;
    const choose = (): void => {
      if (!this.unchosen.delete(choose)) return;
      this.prefetchChosen(state, folder, zip);
    };
    this.unchosen.set(choose, folder.resource.id);
    setImmediate(() => setImmediate(choose));
  }

  /** Choose now the files of prefetches still waiting to: an open may be for one of them. */
  private chooseNow(): void {
    for (const choose of [...this.unchosen.keys()]) choose();
  }

  /**
   * Enough files and a small enough resource for a zip, judged before most files are keyed: the
   * first zipMinFiles candidates must all be missing here (a folder read before, now in the disk
   * cache, must cost no zip request).
   */
  private zipLikely(state: FolderState, folder: FolderContext): boolean {
    const p = this.options.prefetch;
    if (folder.resource.totalBytes > p.zipMaxBytes) return false;
    let n = 0;
    for (const s of folder.siblings()) {
      if (state.opened.has(s.path) || s.size === 0 || s.size > p.maxFileBytes) continue;
      if (this.isAtHand(this.keyOf(s))) return false;
      if (++n >= p.zipMinFiles) return true;
    }
    return false;
  }

  /** In memory, in the disk cache, or on its way. */
  private isAtHand(key: string): boolean {
    return this.memory.has(key) || this.active.has(key) || this.incoming.has(key) || this.writeBehind.get(key) !== undefined || this.options.cache.lookup(key) !== null;
  }

  private requestZip(resource: FolderContext['resource']): EarlyZip {
    const abort = new AbortController();
    const signal = AbortSignal.any([this.closing.signal, abort.signal]);
    const body = this.client.downloadResourceZip(resource.owner, resource.id, { background: true, signal, compression: this.options.prefetch.zipCompression });
    body.catch(() => undefined); // awaited by fetchZipMembers, or dropped unused
    const drop = (): void => {
      abort.abort();
      // Its answer may have come already: an aborted body errors, and must not go unheard.
      void body.then((b) => void b.on('error', () => undefined).destroy(), () => undefined);
    };
    return { body, abort: drop, seen: { at: performance.now() } };
  }

  private prefetchChosen(state: FolderState, folder: FolderContext, zip: EarlyZip | null): void {
    const p = this.options.prefetch;
    if (this.closing.signal.aborted) {
      zip?.abort();
      return;
    }
    let budget = p.maxFolderBytes;
    const queue: FileRef[] = [];
    for (const s of folder.siblings()) {
      if (state.opened.has(s.path) || s.size === 0 || s.size > p.maxFileBytes) continue;
      if (this.isAtHand(this.keyOf(s))) continue;
      if (budget - s.size < 0) break;
      budget -= s.size;
      queue.push(s);
    }
    const byZip = queue.length >= p.zipMinFiles && folder.resource.totalBytes <= p.zipMaxBytes;
    // Most of the folder was at hand after all: its zip would mostly bring what is here already.
    if (zip && !byZip) zip.abort();
    // The zip carries the resource's other folders too: kept, they need no zip of their own
    // (`cp -r` of a resource of two folders took two zips of all of it, 162 MB for 81).
    if (byZip && folder.resourceFiles) {
      const queued = new Set(queue.map((s) => s.path));
      for (const s of folder.resourceFiles()) {
        if (queued.has(s.path) || state.opened.has(s.path) || s.size === 0 || s.size > p.maxFileBytes) continue;
        if (this.isAtHand(this.keyOf(s))) continue;
        if (budget - s.size < 0) break;
        budget -= s.size;
        queue.push(s);
      }
    }
    // A zip carries the whole resource anyway (at most zipMaxBytes); file by file, large ones wait.
    const now = byZip || state.readThrough ? queue : queue.filter((s) => s.size <= this.largeFileBytes);
    if (now.length < queue.length) state.deferred = queue.filter((s) => s.size > this.largeFileBytes);
    log('prefetch %s: %d files, %d bytes%s%s', folder.key, queue.length, p.maxFolderBytes - budget, byZip ? ' (one zip)' : '',
      state.deferred.length > 0 ? `; ${state.deferred.length} large ones once a program reads one through` : '');
    const transfers = byZip ? this.prefetchByZip(folder.resource, queue, zip ?? this.requestZip(folder.resource)) : this.prefetchEach(now);
    void transfers.then(() => {
      state.prefetchDone = true;
      if (state.opened.size > 0) this.readAhead(state);
    });
  }

  private prefetchEach(refs: FileRef[]): Promise<unknown> {
    return Promise.allSettled(refs.map((s) => this.prefetchLimit(() => this.prefetchOne(s))));
  }

  /** A program read far into a large file: the large files its folder's prefetch left go now. */
  private noteReadThrough(key: string): void {
    const state = this.largeOpened.get(key);
    if (!state) return;
    this.largeOpened.delete(key);
    if (state.readThrough) return;
    state.readThrough = true;
    const deferred = state.deferred;
    state.deferred = [];
    if (deferred.length === 0 || this.closing.signal.aborted) return;
    log('prefetch of %d large files of %s: a program reads them through', deferred.length, state.context?.key);
    void this.prefetchEach(deferred);
  }

  /**
   * The folder listed next after `from` (by the same walk, recently), fetched while the program
   * still reads `from`: one folder ahead of the furthest one it has opened, so a walk that stops
   * costs at most one folder.
   */
  private readAhead(from: FolderState): void {
    // Once per folder; while nothing was listed after it, again only after another listing
    // (find lists the next folder while cat still reads this one).
    if (from.readAheadFrom || from.listedSeq === 0 || from.readAheadSeen === this.listedSeq || this.closing.signal.aborted) return;
    const now = Date.now();
    let next: FolderState | null = null;
    for (const f of this.folders.values()) {
      if (f.listedSeq <= from.listedSeq || f.prefetched || f.opened.size > 0 || !f.context || now - f.listedAt > READ_AHEAD_LISTED_MS) continue;
      if (!next || f.listedSeq < next.listedSeq) next = f;
    }
    if (!next?.context) {
      from.readAheadSeen = this.listedSeq;
      return;
    }
    from.readAheadFrom = true;
    if (next.context.resource.totalBytes > READ_AHEAD_MAX_BYTES) return;
    log('reading ahead: %s', next.context.key);
    this.prefetchFolder(next, next.context);
  }

  private folderState(key: string): FolderState {
    let state = this.folders.get(key);
    if (!state) {
      if (this.folders.size > 10_000) this.folders.clear();
      state = { opened: new Set(), prefetched: false, listedAt: 0, listedSeq: 0, context: null, prefetchDone: false, readAheadFrom: false, readAheadSeen: -1, deferred: [], readThrough: false };
      this.folders.set(key, state);
    }
    return state;
  }

  private async prefetchOne(ref: FileRef): Promise<void> {
    const key = this.keyOf(ref);
    if (this.options.cache.lookup(key)) return;
    await this.hold(key, this.startDownload(key, ref, {}));
  }

  /** Resolves when the zip's transfer has ended (members that failed are then fetched on their own). */
  private prefetchByZip(resource: FolderContext['resource'], refs: FileRef[], request: EarlyZip): Promise<void> {
    const wanted = new Map<string, WantedMember>();
    for (const ref of refs) {
      const key = this.keyOf(ref);
      if (ref.size <= SMALL_FILE_BYTES) {
        // Small files skip the Download machinery: checked, kept in memory, written later.
        this.stats.prefetched++;
        const arrival = new Member(request);
        this.incoming.set(key, arrival);
        wanted.set(ref.path, {
          size: ref.size,
          resolve: (m) => {
            request.seen.at = performance.now(); // also from the central directory, after the last chunk
            if (Buffer.isBuffer(m)) this.acceptLater(key, ref, arrival, m);
            else void buffer(m).then((b) => this.acceptMember(key, ref, arrival, b), (err: unknown) => this.missedMember(key, ref, arrival, err as Error));
          },
          reject: (err) => this.missedMember(key, ref, arrival, err),
        });
        continue;
      }
      let settle!: Pick<WantedMember, 'resolve' | 'reject'>;
      const member = new Promise<Buffer | Readable>((resolve, reject) => (settle = { resolve, reject }));
      member.catch(() => undefined);
      wanted.set(ref.path, {
        size: ref.size,
        resolve: (m) => {
          request.seen.at = performance.now();
          settle.resolve(m);
        },
        reject: settle.reject,
      });
      // Files the zip does not deliver are fetched on their own, under the prefetch limit; one a
      // program waits for, at once when the zip stalls.
      let active: Active | undefined;
      const waitedFor = (): boolean => (active?.refs ?? 0) > 1; // the prefetch's own hold is one
      const first = (): Promise<ReadResult> =>
        this.unlessStalled(member, request, waitedFor).then((m) => ({ status: 200, start: 0, totalSize: ref.size, lastModified: null, body: Buffer.isBuffer(m) ? Readable.from([m]) : m }));
      active = this.startDownload(key, ref, { first, gate: (fn) => this.prefetchLimit(fn) });
      void this.hold(key, active);
    }
    this.stats.zips++;
    const tmp = this.options.cache.partialPath(`zip-${resource.id}`);
    const seen = request.seen;
    const zip = fetchZipMembers(request.body, resource.id, wanted, tmp, {
      pace: () => {
        seen.at = performance.now();
        // Members arrive faster than the disk may take them: hold the zip while too many wait.
        return this.writeBehind.roomFor()?.then(() => void (seen.at = performance.now()));
      },
    }).catch((err: unknown) => {
      log('zip prefetch of resource %s failed (%s); files are fetched one by one', resource.id, (err as Error).message);
    });
    this.zipsInFlight.add(zip);
    void zip.finally(() => this.zipsInFlight.delete(zip));
    return zip;
  }

  /**
   * A small file from a zip, checked and kept on a later turn of the event loop unless a program
   * waits for it: every FUSE call waits for the main thread, which checking each member as it
   * arrived (its MD5, the memory cache, the write-behind) held for 197-231 ms of a 2,000-member
   * zip's 200-270 ms arrival (142-170 ms now, CPU profiles of the cold b read).
   */
  private acceptLater(key: string, ref: FileRef, arrival: Member, data: Buffer): void {
    if (arrival.awaited || this.uncheckedBytes + data.length > UNCHECKED_BYTES) return this.acceptMember(key, ref, arrival, data);
    this.checkNow(key); // one of an earlier zip, under the same key (see forget)
    this.unchecked.set(key, { ref, arrival, data });
    this.uncheckedBytes += data.length;
    if (this.checking) return;
    this.checking = true;
    const turn = (): void => {
      let n = 0;
      for (const key of this.unchecked.keys()) {
        this.checkNow(key);
        if (++n >= CHECKED_PER_TURN) break;
      }
      if (this.unchecked.size > 0) setImmediate(turn);
      else this.checking = false;
    };
    setImmediate(turn);
  }

  /** Check and keep the member under `key` if it waits for that; whether it did. */
  private checkNow(key: string): boolean {
    const m = this.unchecked.get(key);
    if (!m) return false;
    this.unchecked.delete(key);
    this.uncheckedBytes -= m.data.length;
    this.acceptMember(key, m.ref, m.arrival, m.data);
    return true;
  }

  /** A small file from a zip: checked against the listing like any download, then kept. */
  private acceptMember(key: string, ref: FileRef, arrival: Member, data: Buffer): void {
    this.stats.membersChecked++;
    let problem: string | null = null;
    if (data.length !== ref.size) {
      problem = `${data.length} bytes in the zip, the listing says ${ref.size}`;
    } else if (ref.digest !== '') {
      const actual = createHash('md5').update(data).digest('hex');
      if (actual !== ref.digest.toLowerCase()) problem = `MD5 ${actual} differs from XNAT's listed digest ${ref.digest}`;
    }
    if (problem) return this.missedMember(key, ref, arrival, new XnatError('protocol', `${ref.path}: ${problem}`));
    // Not kept when forget() took it out of `incoming`: the version it belongs to was replaced.
    if (this.incoming.get(key) === arrival) {
      const kept = standalone(data);
      this.memory.set(key, kept);
      this.writeBehind.add(key, kept);
      this.incoming.delete(key);
    }
    arrival.deliver(data);
  }

  /** A small file the zip did not deliver (or delivered wrong): fetched on its own. */
  private missedMember(key: string, ref: FileRef, arrival: Member, err: Error): void {
    // Taken out by forget(): that version was replaced on XNAT, and a GET now would bring the new
    // one, to be kept under the old version's key (without a digest, even of another size).
    const current = this.incoming.get(key) === arrival;
    if (current) this.incoming.delete(key);
    arrival.fail(err);
    if (!current) return;
    log('%s: not from the zip (%s); fetching it on its own', ref.path, err.message);
    if (!this.closing.signal.aborted) void this.prefetchLimit(() => this.prefetchOne(ref));
  }

  /** Keep a prefetch download referenced until it ends, then let it go. */
  private async hold(key: string, active: Active): Promise<void> {
    this.stats.prefetched++;
    this.attach(active);
    try {
      await active.download.finished;
    } finally {
      active.refs--;
      await this.maybeDiscard(key, active);
    }
  }

  /** Wait for every download to end (used at unmount and by tests). */
  async idle(): Promise<void> {
    this.chooseNow();
    for (const key of [...this.unchecked.keys()]) this.checkNow(key);
    while (this.active.size > 0 || this.zipsInFlight.size > 0 || this.incoming.size > 0 || this.endings.size > 0) {
      await Promise.all([...this.active.values()].map((a) => a.download.finished));
      await Promise.all([...this.zipsInFlight, ...this.endings, ...[...this.incoming.values()].map((a) => a.wait().catch(() => undefined))]);
      await new Promise((r) => setImmediate(r));
    }
    await this.writeBehind.flush();
  }

  async close(): Promise<void> {
    this.closing.abort(); // zips being fetched
    for (const a of this.active.values()) a.download.cancel();
    await this.idle().catch(() => undefined);
    for (const [fd] of this.handles) await this.release(fd);
  }

  /** `prefetch`: started by a prefetch, not for a program that waits (see Download.background). */
  private startDownload(key: string, ref: FileRef, prefetch: { first?: FirstSource; gate?: Gate } | null = null): Active {
    const existing = this.active.get(key);
    if (existing && !existing.download.error) {
      if (!prefetch) existing.download.promote();
      return existing;
    }
    const path = this.options.cache.partialPath(key);
    const download = new Download(this.client, ref, path, this.options.download, prefetch ? { ...prefetch, background: true } : {});
    const active: Active = { download, refs: 0, committed: null };
    this.active.set(key, active);
    this.stats.downloads++;
    const ending = download.finished.then(async () => {
      if (download.error) {
        log('download of %s failed: %s', ref.path, download.error.message);
        // A later open starts afresh; current readers get the error.
        if (this.active.get(key) === active) this.active.delete(key);
        await unlink(path).catch(() => undefined);
        await download.closeHandles();
        return;
      }
      if (download.received <= SMALL_FILE_BYTES && !active.superseded) {
        const bytes = download.bytes();
        // A copy: a received chunk may be a view into a larger network buffer.
        if (bytes) this.memory.set(key, standalone(bytes));
      }
      active.committed = active.superseded
        ? false
        : await download.relocate(this.options.cache.objectPath(key), () => this.options.cache.commit(key, path, download.written)).catch(() => false);
      // forget() during the commit's rename: take it out again.
      if (active.superseded && active.committed) {
        this.options.cache.remove(key);
        active.committed = false;
      }
      if (active.committed && this.active.get(key) === active) this.active.delete(key);
      await this.maybeDiscard(key, active);
    }).catch((err: unknown) => log('after the download of %s: %s', ref.path, (err as Error).message));
    this.endings.add(ending);
    void ending.finally(() => this.endings.delete(ending));
    return active;
  }

  private async maybeDiscard(key: string, active: Active): Promise<void> {
    if (active.refs > 0 || !active.download.done) return;
    await active.download.closeHandles();
    // A program opened the file again meanwhile (close then reopen, xargs): it shares this
    // download and reads its file by path; deleting it now failed that read with ENOENT (EIO).
    if (active.refs > 0) return;
    if (active.committed === false) {
      if (this.active.get(key) === active) this.active.delete(key);
      await unlink(active.download.path).catch(() => undefined);
    }
  }
}
