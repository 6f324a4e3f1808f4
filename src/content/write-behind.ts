// Small files that arrived whole in memory (members of a prefetch zip) reach the disk cache later,
// when the mount is quiet: written while a program is reading them through, each costs an
// open, a write, a close and a rename on the thread pool plus their callbacks on the main
// thread, which FUSE handlers are waiting for (measured: about 0.3 s of main-thread time for
// 2,000 files). Until written they are served from here. Memory stays bounded: past
// `maxPendingBytes` the writes go ahead whatever the activity.
import { writeFile, unlink } from 'node:fs/promises';
import createDebug from 'debug';
import type { DiskCache } from './disk-cache.js';

const log = createDebug('xnatfs:cache');

export interface WriteBehindOptions {
  /** Writes wait until no file was opened or read for this long. */
  idleMs: number;
  /** Bytes waiting beyond this are written at once. */
  maxPendingBytes: number;
}

export class WriteBehind {
  private readonly pending = new Map<string, Buffer>();
  private pendingBytes = 0;
  private lastActivity = 0;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private wakeTimer: (() => void) | null = null;
  private urgent = false;
  private roomWaiters: Array<() => void> = [];
  /** The key being written now, and whether drop() was called for it meanwhile. */
  private writing: { key: string; dropped: boolean } | null = null;

  constructor(
    private readonly cache: DiskCache,
    private readonly options: WriteBehindOptions,
  ) {}

  /** Something is reading through the mount: hold the writes back a little longer. */
  touch(): void {
    this.lastActivity = performance.now();
  }

  get(key: string): Buffer | undefined {
    return this.pending.get(key);
  }

  add(key: string, data: Buffer): void {
    if (this.pending.has(key) || this.cache.lookup(key)) return;
    this.pending.set(key, data);
    this.pendingBytes += data.length;
    if (this.pendingBytes > this.options.maxPendingBytes) this.wake();
    this.running ??= this.run();
  }

  /**
   * These bytes are of an old version: never serve or write them (see ContentStore.forget). Also
   * while they are being written: get() must not hand them out meanwhile, and a newer version
   * may be added under the same key at once.
   */
  drop(key: string): void {
    if (this.writing?.key === key) this.writing.dropped = true;
    const data = this.pending.get(key);
    if (!data) return;
    this.pending.delete(key);
    this.pendingBytes -= data.length;
    if (this.pendingBytes <= this.options.maxPendingBytes) this.releaseRoom();
  }

  /** Resolves once the bytes waiting are within the bound again (backpressure for a zip). */
  roomFor(): Promise<void> | undefined {
    if (this.pendingBytes <= this.options.maxPendingBytes) return undefined;
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Write everything now and wait for it (unmount, tests). */
  async flush(): Promise<void> {
    this.urgent = true;
    this.wake();
    try {
      while (this.running) await this.running;
    } finally {
      this.urgent = false;
    }
  }

  private wake(): void {
    const w = this.wakeTimer;
    this.wakeTimer = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    w?.();
  }

  private async quiet(): Promise<void> {
    for (;;) {
      if (this.urgent || this.pendingBytes > this.options.maxPendingBytes) return;
      const wait = this.lastActivity + this.options.idleMs - performance.now();
      if (wait <= 0) return;
      await new Promise<void>((resolve) => {
        this.wakeTimer = resolve;
        this.timer = setTimeout(() => this.wake(), wait);
        this.timer.unref(); // a quiet mount that is unmounting must not wait for this
      });
    }
  }

  private async run(): Promise<void> {
    try {
      while (this.pending.size > 0) {
        await this.quiet();
        const next = this.pending.entries().next();
        if (next.done) break; // dropped while waiting
        const [key, data] = next.value;
        const partial = this.cache.partialPath(key);
        const writing = (this.writing = { key, dropped: false });
        try {
          await writeFile(partial, data, { mode: 0o600 });
          // Dropped meanwhile (an old version): not kept, also when the drop came during the rename.
          if (writing.dropped || !(await this.cache.commit(key, partial, data.length))) await unlink(partial);
          else if (writing.dropped) this.cache.remove(key);
        } catch (err) {
          // A full or broken disk only costs a later download.
          log('could not keep %s in the disk cache: %s', key, (err as Error).message);
          await unlink(partial).catch(() => undefined);
        } finally {
          this.writing = null;
        }
        // Unless drop() took them out already (and a newer version may wait under the key).
        if (this.pending.get(key) === data) {
          this.pending.delete(key);
          this.pendingBytes -= data.length;
        }
        if (this.pendingBytes <= this.options.maxPendingBytes) this.releaseRoom();
      }
    } finally {
      this.running = null;
      this.releaseRoom();
    }
  }

  private releaseRoom(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }
}
