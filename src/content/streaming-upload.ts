// An upload that starts while its file is still being written (cp of a large result into the
// mount): the request body follows the spool file as it grows, so the transfer overlaps the
// writing instead of starting only at close(). Abandoning one is safe: XNAT parses a multipart
// body completely before it stores anything (SecureResource.getFileWritersAndLoadParams →
// FileUpload.parseRequest), so a request cut short leaves the server as it was.
import { open } from 'node:fs/promises';

export interface StreamingLimits {
  /** Give up when the writer adds nothing for this long: proxies cut idle request bodies (nginx after 60 s). */
  idleMs: number;
  /** Give up when the connection takes no bytes, or XNAT does not answer after the last one, for this long. */
  stallMs: number;
}

export const DEFAULT_STREAMING_LIMITS: StreamingLimits = { idleMs: 20_000, stallMs: 60_000 };

/**
 * Bytes read from the spool per body chunk. Progress is seen once per chunk taken, so this also
 * sets the slowest link that never looks stalled: 256 KiB per stallMs (about 4 KB/s at 60 s).
 */
const CHUNK_BYTES = 256 * 1024;

export type SendBody = (body: () => AsyncIterable<Buffer>, signal: AbortSignal) => Promise<void>;

export class StreamingUpload {
  /** Bytes of the spool file that writes have completed (a prefix: writes only appended). */
  private available = 0;
  /** The file's size once its writer is done. */
  private final: number | null = null;
  private failure: Error | null = null;
  /**
   * Attempts waiting for writes. All of them: an attempt dropped while waiting (a 401, then the
   * retry after logging in again) must wake too, to reach its end and close the spool file.
   */
  private readonly waiting = new Set<() => void>();
  private waitingForWrites = false;
  private lastProgress = Date.now();
  private readonly abort = new AbortController();
  private readonly watchdog: NodeJS.Timeout;
  /** Every byte went out at least once: XNAT may hold this copy even if its answer was lost. */
  bodySent = false;
  /** Settles with XNAT's answer; rejects when the upload was abandoned or failed. */
  readonly result: Promise<void>;

  constructor(
    private readonly spoolPath: string,
    send: SendBody,
    private readonly limits: StreamingLimits = DEFAULT_STREAMING_LIMITS,
  ) {
    this.watchdog = setInterval(() => this.check(), Math.min(1000, limits.idleMs / 4, limits.stallMs / 4));
    this.watchdog.unref();
    this.result = send(() => this.follow(), this.abort.signal).finally(() => {
      clearInterval(this.watchdog);
      this.poke(); // attempts dropped while waiting end now
    });
    this.result.catch(() => undefined); // observed through finish()
  }

  /** The size sent, once finish() was called. */
  get finalSize(): number | null {
    return this.final;
  }

  /** Writes have completed up to `size`. */
  grow(size: number): void {
    if (size <= this.available) return;
    this.available = size;
    this.poke();
  }

  /** The writer is done: the rest is sent, and the promise settles with XNAT's answer. */
  finish(size: number): Promise<void> {
    this.final = size;
    this.available = size;
    this.lastProgress = Date.now();
    this.poke();
    return this.result;
  }

  /** The spool no longer matches what was sent (rewritten, truncated, renamed, deleted). */
  abandon(reason: string): void {
    if (this.failure) return;
    this.failure = new Error(reason);
    this.abort.abort(this.failure);
    this.poke();
  }

  private poke(): void {
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const w of waiting) w();
  }

  private check(): void {
    const quiet = Date.now() - this.lastProgress;
    if (this.waitingForWrites) {
      if (quiet > this.limits.idleMs) this.abandon(`the writer added nothing for ${Math.round(quiet / 1000)} s`);
    } else if (quiet > this.limits.stallMs) {
      this.abandon(this.bodySent ? `XNAT did not answer within ${Math.round(quiet / 1000)} s of the last byte` : `the connection took no bytes for ${Math.round(quiet / 1000)} s`);
    }
  }

  /** The file's bytes, read from the spool as writes complete; called again for each attempt. */
  private async *follow(): AsyncGenerator<Buffer> {
    const fh = await open(this.spoolPath, 'r');
    try {
      let pos = 0;
      for (;;) {
        if (this.failure) throw this.failure;
        if (pos < this.available) {
          const n = Math.min(CHUNK_BYTES, this.available - pos);
          const buf = Buffer.allocUnsafe(n);
          const { bytesRead } = await fh.read(buf, 0, n, pos);
          if (bytesRead !== n) throw new Error(`spool file ${this.spoolPath} holds less than was written`);
          pos += n;
          this.lastProgress = Date.now();
          yield buf;
          this.lastProgress = Date.now();
          continue;
        }
        if (this.final !== null && pos >= this.final) {
          this.bodySent = true;
          this.lastProgress = Date.now();
          return;
        }
        this.waitingForWrites = true;
        await new Promise<void>((resolve) => this.waiting.add(resolve));
        this.waitingForWrites = false;
        this.lastProgress = Date.now();
      }
    } finally {
      await fh.close();
    }
  }
}
