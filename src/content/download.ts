// One file streamed from XNAT into a local file, with readers waiting on progress.
// Reads are served from the local file as bytes arrive, so memory stays bounded whatever the
// file size, and the kernel page cache does the buffering. Real XNAT ignores Range: when a
// connection drops mid-body, the download resumes with Range if the server honoured it, and
// otherwise restarts from byte 0 and skips what it already has. Bytes are checked against the
// listed size and MD5 digest before the file is considered complete.
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import createDebug from 'debug';
import type { FileRef, XnatApi } from '../xnat/types.js';
import { XnatError } from '../xnat/types.js';

const log = createDebug('xnatfs:download');

export interface DownloadOptions {
  /** Attempts per download after connection failures (first included). */
  maxAttempts: number;
  /** Base delay between attempts, doubled each time. */
  retryDelayMs: number;
}

interface Waiter {
  offset: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Download {
  /** Contiguous bytes written from offset 0. */
  written = 0;
  done = false;
  error: Error | null = null;
  /** Size the server actually sent (known when done). */
  finalSize: number | null = null;
  readonly finished: Promise<void>;
  private waiters: Waiter[] = [];
  private readonly abort = new AbortController();
  private writer: FileHandle | null = null;
  private reader: FileHandle | null = null;
  private readerOpening: Promise<FileHandle> | null = null;

  constructor(
    private readonly client: XnatApi,
    readonly ref: FileRef,
    /** Where the bytes are; the owner updates it when the finished file moves into the cache. */
    public path: string,
    private readonly options: DownloadOptions,
  ) {
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

  /** Resolves once bytes [0, offset) are on disk, or the download ended (then check `error`). */
  waitFor(offset: number): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.written >= offset || this.done) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ offset, resolve, reject }));
  }

  /** Read from what has arrived; waits for the bytes first. Returns 0 only at end of file. */
  async read(buf: Buffer, len: number, pos: number): Promise<number> {
    await this.waitFor(pos + len);
    if (this.error) throw this.error;
    const available = Math.min(len, this.written - pos);
    if (available <= 0) return 0;
    const fh = await this.readHandle();
    const { bytesRead } = await fh.read(buf, 0, available, pos);
    return bytesRead;
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

  private readHandle(): Promise<FileHandle> {
    if (this.reader) return Promise.resolve(this.reader);
    this.readerOpening ??= open(this.path, 'r').then((fh) => (this.reader = fh));
    return this.readerOpening;
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.written >= w.offset) w.resolve();
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
    this.writer = await open(this.path, 'w', 0o600);
    // Open the reading side now, by the path we just created: once the finished file is moved
    // into the cache, an open by the old path would fail.
    this.readerOpening = open(this.path, 'r').then((fh) => (this.reader = fh));
    this.readerOpening.catch(() => undefined);
    try {
      let attempt = 0;
      const hash = createHash('md5');
      for (;;) {
        attempt++;
        try {
          await this.fetchFrom(this.written, hash);
          break;
        } catch (err) {
          if (this.abort.signal.aborted) throw new XnatError('network', `download of ${this.ref.path} cancelled`);
          const retriable = !(err instanceof XnatError) || err.kind === 'network' || err.kind === 'server';
          if (!retriable || attempt >= this.options.maxAttempts) throw err;
          const delay = this.options.retryDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random());
          log('%s: attempt %d failed at byte %d (%s); retrying in %d ms', this.ref.path, attempt, this.written, (err as Error).message, Math.round(delay));
          await new Promise((r) => setTimeout(r, delay));
        }
      }
      this.finalSize = this.written;
      if (this.ref.digest !== '') {
        const actual = hash.digest('hex');
        if (actual.toLowerCase() !== this.ref.digest.toLowerCase()) {
          throw new XnatError('protocol', `${this.ref.path}: MD5 ${actual} differs from XNAT's listed digest ${this.ref.digest}`);
        }
      }
      if (this.written !== this.ref.size) {
        log('%s: server sent %d bytes, listing said %d', this.ref.path, this.written, this.ref.size);
      }
    } finally {
      await this.writer.close().catch(() => undefined);
      this.writer = null;
    }
  }

  /**
   * One GET. Asks for a Range when resuming; if the server answers 200 instead, skips the
   * bytes already on disk. The hash covers bytes in order, so on a 200 resume it is only fed
   * the new bytes (the skipped ones were hashed before).
   */
  private async fetchFrom(start: number, hash: ReturnType<typeof createHash>): Promise<void> {
    const res = await this.client.readFile(this.ref, start > 0 ? { start, signal: this.abort.signal } : { signal: this.abort.signal });
    let skip = res.status === 206 ? start - res.start : start;
    if (skip < 0) throw new XnatError('protocol', `${this.ref.path}: server answered a range we did not ask for`);
    let pos = res.status === 206 ? res.start + skip : skip;
    const writer = this.writer!;
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
      await writeFully(writer, data, pos);
      hash.update(data);
      pos += data.length;
      this.written = pos;
      this.wake();
    }
    if (skip > 0) throw new XnatError('network', `${this.ref.path}: body ended before byte ${start}`);
    if (res.totalSize !== null && this.written < res.totalSize) {
      throw new XnatError('network', `${this.ref.path}: connection closed after ${this.written} of ${res.totalSize} bytes`);
    }
  }
}

async function writeFully(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, position + off);
    off += bytesWritten;
  }
}
