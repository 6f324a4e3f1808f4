// One file streamed from XNAT into a local file, with readers following as bytes arrive.
// Memory stays bounded whatever the file size: arriving bytes go to a write queue (flushed in
// batches with writev) and a window of the most recent few MiB, from which a reader right behind
// the download frontier (`cat`, `cp`) is served without touching the disk; older bytes are read
// back from the file. Real XNAT ignores Range: when a connection drops mid-body, the download
// resumes with Range if the server honoured it, and otherwise restarts from byte 0 and skips
// what it already has. Bytes are checked against the listed MD5 digest before the file is
// considered complete.
import { open, type FileHandle } from 'node:fs/promises';
import createDebug from 'debug';
import type { FileRef, ReadResult, XnatApi } from '../xnat/types.js';
import { Standing, XnatError } from '../xnat/types.js';
import { createMd5, type Md5 } from './md5.js';

const log = createDebug('xnatfs:download');

/** Recent bytes kept in memory for readers right behind the download. */
const WINDOW_BYTES = 16 * 1024 * 1024;
/** A file is kept in memory until this many bytes have arrived, then written as it streams. */
const LAZY_WRITE_BYTES = 1024 * 1024;
/** Bytes received but not yet on disk before the body stream is paused. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

export interface DownloadOptions {
  /**
   * Attempts per download after connection failures (first included). An attempt that timed out
   * without a byte is the last: the server had its whole timeout and said nothing, and each more
   * attempt would make the reader wait that long again (five of them, 60 s each, plus the queue,
   * held a `cat` for 8 minutes against a hung server).
   */
  maxAttempts: number;
  /** Base delay between attempts, doubled each time. */
  retryDelayMs: number;
}

/** Where a download's bytes come from first (e.g. a member of a zip being unpacked). */
export type FirstSource = () => Promise<ReadResult>;

export interface DownloadSource {
  first?: FirstSource;
  /** Wraps each GET (e.g. a concurrency limit for prefetches). */
  gate?: <T>(fn: () => Promise<T>) => Promise<T>;
  /** A prefetch: its GETs yield to foreground requests (see `background` below). */
  background?: boolean;
}

interface Waiter {
  offset: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Piece {
  pos: number;
  buf: Buffer;
}

export class Download {
  /** Contiguous bytes received from offset 0 (in the window or on disk). */
  received = 0;
  /** Contiguous bytes on disk from offset 0. */
  written = 0;
  /** Every byte has arrived and matched the digest (the disk may still be catching up). */
  complete = false;
  /** Finished, on disk and closed, or failed. */
  done = false;
  error: Error | null = null;
  readonly finished: Promise<void>;
  private waiters: Waiter[] = [];
  private readonly abort = new AbortController();
  private writer: FileHandle | null = null;
  private reader: FileHandle | null = null;
  private readerOpening: Promise<FileHandle> | null = null;
  /** The finished file being moved (see relocate). */
  private moving: Promise<unknown> | null = null;
  private window: Piece[] = [];
  private windowBytes = 0;
  private queue: Piece[] = [];
  private queuedBytes = 0;
  private writing: Promise<void> | null = null;
  private writeError: Error | null = null;
  private readonly firstSource: FirstSource | undefined;
  private readonly gate: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Set while its GETs are prefetches; promote() when a program opens the file. */
  private readonly standing: Standing | null;
  /** Lets a GET waiting at the gate go at once (see throughGate). */
  private skipGate: (() => void) | null = null;

  constructor(
    private readonly client: XnatApi,
    readonly ref: FileRef,
    /** Where the bytes are; the owner updates it when the finished file moves into the cache. */
    public path: string,
    private readonly options: DownloadOptions,
    source: DownloadSource = {},
  ) {
    this.firstSource = source.first;
    this.gate = source.gate ?? ((fn) => fn());
    this.standing = source.background ? new Standing() : null;
    this.finished = this.run().then(
      () => {
        this.done = true;
        this.wakeAll();
      },
      (err: unknown) => {
        this.error = err instanceof Error ? err : new Error(String(err));
        this.done = true;
        this.wakeAll();
      },
    );
    // Rejections are delivered to readers through waitFor(); nobody must await `finished`.
    this.finished.catch(() => undefined);
  }

  /** Its GETs are prefetches: they yield to what programs wait for. */
  get background(): boolean {
    return this.standing?.background ?? false;
  }

  /**
   * A program opened the file: its GET goes ahead of every prefetch, also one already waiting
   * at the gate or for a connection (it would otherwise wait behind the rest of the folder).
   */
  promote(): void {
    this.standing?.promote();
    this.skipGate?.();
  }

  /** Resolves once bytes [0, offset) have arrived, or the download ended (then check `error`). */
  waitFor(offset: number): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.received >= offset || this.complete || this.done) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ offset, resolve, reject }));
  }

  /** Read what has arrived; waits for the bytes first. Returns 0 only at end of file. */
  async read(buf: Buffer, len: number, pos: number): Promise<number> {
    await this.waitFor(pos + len);
    if (this.error) throw this.error;
    if (pos + len >= this.ref.size && !this.complete) {
      // The read that reaches the end waits for the digest check: a corrupt file fails its
      // reader (cp, dcm2niix) instead of ending quietly.
      await this.waitFor(Number.MAX_SAFE_INTEGER);
      if (this.error) throw this.error;
    }
    const want = Math.min(len, this.received - pos);
    if (want <= 0) return 0;
    // Bytes below the window's start, or below `written`, are on disk; the rest are in the
    // window. The window may shrink while we await the disk, hence the loop.
    let got = 0;
    while (got < want) {
      const at = pos + got;
      if (this.copyFromWindow(buf.subarray(got), want - got, at)) return want;
      const windowStart = this.window.length > 0 ? this.window[0]!.pos : this.received;
      const onDisk = Math.min(pos + want, Math.max(windowStart, this.written));
      if (onDisk <= at) throw new Error(`${this.ref.path}: byte ${at} neither in memory nor on disk`);
      const fh = await this.readHandle();
      const { bytesRead } = await fh.read(buf, got, onDisk - at, at);
      if (bytesRead === 0) throw new Error(`${this.ref.path}: cache file shorter than expected`);
      got += bytesRead;
    }
    return want;
  }

  /** File bytes held in memory: the window of recent bytes, which holds those not yet on disk too. */
  get memoryBytes(): number {
    return this.windowBytes;
  }

  /** The whole file, if it is complete and still entirely in memory (small files). */
  bytes(): Buffer | null {
    if (!this.complete || this.window.length === 0 || this.window[0]!.pos !== 0) return null;
    return this.window.length === 1 ? this.window[0]!.buf : Buffer.concat(this.window.map((p) => p.buf));
  }

  cancel(): void {
    this.abort.abort();
  }

  async closeHandles(): Promise<void> {
    const r = this.reader ?? (this.readerOpening ? await this.readerOpening.catch(() => null) : null);
    this.reader = null;
    this.readerOpening = null;
    await r?.close().catch(() => undefined);
  }

  /**
   * Move the finished file (into the cache) with `move`, which renames it to `to`. A reader that
   * opens the file meanwhile waits for the move and opens it where it is then: by the old path
   * after the rename it got ENOENT, an EIO for the program.
   */
  async relocate(to: string, move: () => Promise<boolean>): Promise<boolean> {
    const moved = move().then((ok) => {
      if (ok) this.path = to;
      return ok;
    });
    this.moving = moved.catch(() => undefined);
    try {
      return await moved;
    } finally {
      this.moving = null;
    }
  }

  private readHandle(): Promise<FileHandle> {
    if (this.reader) return Promise.resolve(this.reader);
    if (!this.readerOpening) {
      const opening = (this.moving ?? Promise.resolve()).then(() => open(this.path, 'r'));
      this.readerOpening = opening.then((fh) => (this.reader = fh));
      // A failed open is not kept: the next read tries again.
      this.readerOpening.catch(() => {
        if (this.readerOpening && !this.reader) this.readerOpening = null;
      });
    }
    return this.readerOpening;
  }

  /** Copy [pos, pos+len) from the in-memory window if it holds all of it. */
  private copyFromWindow(buf: Buffer, len: number, pos: number): boolean {
    const w = this.window;
    if (w.length === 0 || pos < w[0]!.pos) return false;
    let copied = 0;
    for (const p of w) {
      const end = p.pos + p.buf.length;
      if (end <= pos + copied) continue;
      const from = pos + copied - p.pos;
      if (from < 0) return false;
      const n = Math.min(p.buf.length - from, len - copied);
      p.buf.copy(buf, copied, from, from + n);
      copied += n;
      if (copied === len) return true;
    }
    return false;
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.received >= w.offset) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private wakeAll(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (this.error) w.reject(this.error);
      else w.resolve();
    }
  }

  private async run(): Promise<void> {
    try {
      // Without a listed digest there is nothing to check against.
      const hash = this.ref.digest !== '' ? createMd5(this.ref.size) : null;
      let attempt = 0;
      let source: FirstSource | undefined = this.firstSource;
      for (;;) {
        const before = this.received;
        try {
          if (source) {
            const s = source;
            source = undefined;
            // A failed first source (a broken zip) falls back to a plain GET at once.
            const res = await s().catch((err: unknown) => {
              log('%s: first source failed (%s); fetching it on its own', this.ref.path, (err as Error).message);
              return null;
            });
            if (!res) continue;
            await this.consume(res, 0, hash);
          } else {
            attempt++;
            await this.fetchFrom(this.received, hash);
          }
          break;
        } catch (err) {
          await this.flushQueue();
          if (this.abort.signal.aborted) {
            hash?.discard(); // the worker would keep the hash state of a large file otherwise
            throw new XnatError('network', `download of ${this.ref.path} cancelled`);
          }
          const retriable = !(err instanceof XnatError) || err.kind === 'network' || err.kind === 'server';
          // A timeout that brought nothing is final (see DownloadOptions.maxAttempts); one after
          // some bytes is a stalled connection, worth resuming on a fresh one.
          const silent = err instanceof XnatError && err.timedOut && this.received === before;
          if (!retriable || silent || attempt >= this.options.maxAttempts) {
            hash?.discard();
            throw err;
          }
          const delay = attempt === 0 ? 0 : this.options.retryDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random());
          log('%s: attempt %d failed at byte %d (%s); retrying in %d ms', this.ref.path, attempt, this.received, (err as Error).message, Math.round(delay));
          await new Promise((r) => setTimeout(r, delay));
        }
      }
      if (hash) {
        const actual = await hash.digest();
        if (actual.toLowerCase() !== this.ref.digest.toLowerCase()) {
          throw new XnatError('protocol', `${this.ref.path}: MD5 ${actual} differs from XNAT's listed digest ${this.ref.digest}`);
        }
      }
      if (this.received !== this.ref.size) {
        log('%s: server sent %d bytes, listing said %d', this.ref.path, this.received, this.ref.size);
      }
      // Readers need not wait for the disk: what is not written yet is still in the window.
      this.complete = true;
      this.wakeAll();
      await this.flushQueue();
      // All on disk: the window served readers right behind the download, and there is none now.
      // Kept, it held 16 MiB per file for as long as a program kept the file open (20 large files
      // held open took the mount to 525 MB). Small files stay whole for the store's memory (bytes()).
      if (this.received > LAZY_WRITE_BYTES) {
        this.window = [];
        this.windowBytes = 0;
      }
    } finally {
      await this.flushQueue().catch(() => undefined);
      await this.writer?.close().catch(() => undefined);
      this.writer = null;
    }
  }

  /** One GET; asks for a Range when resuming (the server may answer 200 from byte 0). */
  private async fetchFrom(start: number, hash: Md5 | null): Promise<void> {
    const get = (): Promise<ReadResult> =>
      this.client.readFile(this.ref, { signal: this.abort.signal, ...(start > 0 ? { start } : {}), ...(this.background ? { background: this.standing! } : {}) });
    const res = await (this.background ? this.throughGate(get) : get());
    await this.consume(res, start, hash);
  }

  /** `fn` under the gate, unless promote() comes first: then at once (the gate's turn is a no-op). */
  private throughGate<T>(fn: () => Promise<T>): Promise<T> {
    let run: Promise<T> | null = null;
    const start = (): Promise<T> => (run ??= fn());
    const promoted = new Promise<void>((resolve) => (this.skipGate = resolve));
    // The gate is held until the request is answered, as before; a failure is start()'s to report.
    const gated = this.gate(async () => {
      if (!run) await start().catch(() => undefined);
    });
    return Promise.race([gated, promoted]).then(() => {
      this.skipGate = null;
      return start();
    });
  }

  /**
   * Take a response's bytes from `start` on. On a 200 resume the bytes already held are
   * skipped; the hash covers bytes in order, so it is fed only the new ones.
   */
  private async consume(res: ReadResult, start: number, hash: Md5 | null): Promise<void> {
    let skip = res.status === 206 ? start - res.start : start;
    if (skip < 0) throw new XnatError('protocol', `${this.ref.path}: server answered a range we did not ask for`);
    let pos = res.status === 206 ? res.start + skip : skip;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      let data = chunk;
      if (skip > 0) {
        if (data.length <= skip) {
          skip -= data.length;
          continue;
        }
        data = data.subarray(skip);
        skip = 0;
      }
      if (this.writeError) throw this.writeError;
      hash?.update(data);
      this.accept({ pos, buf: data });
      pos += data.length;
      this.received = pos;
      this.wake();
      // Backpressure: stop pulling from the socket while the disk or the MD5 worker is behind.
      if (this.queuedBytes > MAX_QUEUED_BYTES) await this.writing;
      const hashing = hash?.backlog();
      if (hashing) await hashing;
    }
    if (skip > 0) throw new XnatError('network', `${this.ref.path}: body ended before byte ${start}`);
    // The server's length, else the listed size: a body cut short is never taken for the file.
    const expected = res.totalSize ?? this.ref.size;
    if (this.received < expected) {
      throw new XnatError('network', `${this.ref.path}: connection closed after ${this.received} of ${expected} bytes`);
    }
  }

  private accept(piece: Piece): void {
    this.window.push(piece);
    this.windowBytes += piece.buf.length;
    this.queue.push(piece);
    this.queuedBytes += piece.buf.length;
    this.trimWindow();
    // A small file is written in one go when complete; a large one as it streams in.
    if (this.writer || this.queuedBytes >= LAZY_WRITE_BYTES) this.writing ??= this.drain();
  }

  /** Forget window pieces beyond its size, but only once they are on disk. */
  private trimWindow(): void {
    // A prefetch no program reads yet keeps only what is not on disk: the window serves readers
    // right behind the download, and twelve prefetches of large files held 16 MiB each.
    const keep = this.background ? 0 : WINDOW_BYTES;
    while (this.windowBytes > keep && this.window.length > 1) {
      const first = this.window[0]!;
      if (first.pos + first.buf.length > this.written) break;
      this.window.shift();
      this.windowBytes -= first.buf.length;
    }
  }

  /** Write queued pieces in batches until the queue is empty. */
  private async drain(): Promise<void> {
    try {
      if (!this.writer) {
        this.writer = await open(this.path, 'w', 0o600);
        // Open the reading side now, by the path just created: once the finished file moves
        // into the cache, an open by the old path would fail.
        this.readHandle().catch(() => undefined);
      }
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        const bytes = this.queuedBytes;
        await writeAll(this.writer!, batch);
        this.queuedBytes -= bytes;
        this.written = batch[batch.length - 1]!.pos + batch[batch.length - 1]!.buf.length;
        this.trimWindow();
      }
    } catch (err) {
      this.writeError = err instanceof Error ? err : new Error(String(err));
    } finally {
      this.writing = null;
    }
  }

  /** Everything received is on disk (the file exists even when empty). */
  private async flushQueue(): Promise<void> {
    while (this.writing) await this.writing;
    if (!this.writeError && (!this.writer || this.queue.length > 0)) {
      this.writing = this.drain();
      await this.writing;
    }
    if (this.writeError) throw this.writeError;
  }
}

/** writev a batch of contiguous pieces, looping over short writes. */
async function writeAll(fh: FileHandle, pieces: Piece[]): Promise<void> {
  let bufs = pieces.map((p) => p.buf);
  let pos = pieces[0]!.pos;
  while (bufs.length > 0) {
    const { bytesWritten } = await fh.writev(bufs, pos);
    pos += bytesWritten;
    let n = bytesWritten;
    while (n > 0 && bufs.length > 0) {
      if (bufs[0]!.length <= n) {
        n -= bufs[0]!.length;
        bufs = bufs.slice(1);
      } else {
        bufs[0] = bufs[0]!.subarray(n);
        n = 0;
      }
    }
  }
}
