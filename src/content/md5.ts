// MD5 of downloads, checked against XNAT's listed digest. Hashing a large file on the main
// thread halves the throughput of every FUSE handler (measured: 0.9 s of a 2 s `cat` of
// 512 MiB), so large downloads are hashed on a worker thread; small ones inline, where a worker
// round trip would cost more than the hash.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Worker } from 'node:worker_threads';

export interface Md5 {
  update(data: Buffer): void;
  /**
   * While more bytes wait to be hashed than MAX_UNHASHED_BYTES (all hashes together), a promise
   * that resolves when they are fewer: the caller stops reading the network meanwhile.
   */
  backlog(): Promise<void> | undefined;
  digest(): Promise<string>;
  /** Forget an unfinished hash (the download failed). */
  discard(): void;
}

/** Files from this size on are hashed off the main thread. */
export const WORKER_THRESHOLD = 8 * 1024 * 1024;

// CommonJS source for an eval'd worker: no file to resolve, whether running from src/ or dist/.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.type === 'update') {
    let h = hashes.get(m.id);
    if (!h) hashes.set(m.id, (h = createHash('md5')));
    h.update(new Uint8Array(m.data));
    parentPort.postMessage({ type: 'hashed', bytes: m.data.byteLength });
  } else if (m.type === 'digest') {
    const h = hashes.get(m.id) || createHash('md5');
    hashes.delete(m.id);
    parentPort.postMessage({ type: 'digest', id: m.id, digest: h.digest('hex') });
  } else if (m.type === 'drop') {
    hashes.delete(m.id);
  }
});
`;

/**
 * Bound on the bytes sent to the worker and not hashed yet. One worker hashes at 600-800 MB/s;
 * a faster network (10 GbE), or several large downloads at once, queued the difference in
 * memory without limit (gigabytes within a minute of a large `cp -r`).
 */
export const MAX_UNHASHED_BYTES = 64 * 1024 * 1024;

let worker: Worker | null = null;
let nextId = 1;
const waiting = new Map<number, { resolve: (d: string) => void; reject: (e: Error) => void }>();
let unhashed = 0;
let roomWaiters: Array<() => void> = [];

/** Bytes sent to the worker and not hashed yet, all hashes together (for tests). */
export function unhashedBytes(): number {
  return unhashed;
}

function releaseRoom(): void {
  if (unhashed > MAX_UNHASHED_BYTES) return;
  const w = roomWaiters;
  roomWaiters = [];
  for (const r of w) r();
}

function sharedWorker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.on('message', (m: { type: 'hashed'; bytes: number } | { type: 'digest'; id: number; digest: string }) => {
    if (m.type === 'hashed') {
      unhashed -= m.bytes;
      releaseRoom();
      return;
    }
    const p = waiting.get(m.id);
    waiting.delete(m.id);
    if (waiting.size === 0) w.unref();
    p?.resolve(m.digest);
  });
  const fail = (err: Error): void => {
    worker = null;
    unhashed = 0; // its queue is gone; downloads waiting for room go on and fail at digest()
    releaseRoom();
    for (const p of waiting.values()) p.reject(err);
    waiting.clear();
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`MD5 worker exited (${code})`)));
  // Only an awaited digest keeps the process alive (after the listeners: adding a 'message'
  // listener refs the worker again).
  w.unref();
  worker = w;
  return w;
}

/**
 * Bytes gathered before a message to the worker: one copy into a batch per network chunk
 * (a chunk may be a view into a larger buffer, so it cannot be transferred itself), one
 * message and one allocation per batch. Per 64 KiB chunk, the allocations and messages cost
 * a 512 MiB `cat` 0.4 s of main-thread time.
 */
const BATCH_BYTES = 1024 * 1024;

class WorkerMd5 implements Md5 {
  private readonly id = nextId++;
  private readonly w = sharedWorker();
  private batch: Uint8Array<ArrayBuffer> | null = null;
  private filled = 0;
  update(data: Buffer): void {
    let from = 0;
    while (from < data.length) {
      this.batch ??= new Uint8Array(BATCH_BYTES);
      const n = Math.min(data.length - from, BATCH_BYTES - this.filled);
      this.batch.set(data.subarray(from, from + n), this.filled);
      this.filled += n;
      from += n;
      if (this.filled === BATCH_BYTES) this.send();
    }
  }
  private send(): void {
    if (!this.batch || this.filled === 0) return;
    const bytes = this.filled === this.batch.length ? this.batch : this.batch.slice(0, this.filled);
    this.batch = null;
    this.filled = 0;
    unhashed += bytes.length;
    this.w.postMessage({ type: 'update', id: this.id, data: bytes.buffer }, [bytes.buffer]);
  }
  backlog(): Promise<void> | undefined {
    if (unhashed <= MAX_UNHASHED_BYTES || worker !== this.w) return undefined;
    return new Promise((resolve) => roomWaiters.push(resolve));
  }
  digest(): Promise<string> {
    // The worker this hash was fed to died: its state is gone (the download fails, never hangs).
    if (worker !== this.w) return Promise.reject(new Error('MD5 worker exited while hashing'));
    this.send();
    return new Promise((resolve, reject) => {
      waiting.set(this.id, { resolve, reject });
      this.w.ref();
      this.w.postMessage({ type: 'digest', id: this.id });
    });
  }
  discard(): void {
    this.batch = null;
    this.w.postMessage({ type: 'drop', id: this.id });
  }
}

class InlineMd5 implements Md5 {
  private readonly h = createHash('md5');
  update(data: Buffer): void {
    this.h.update(data);
  }
  backlog(): undefined {
    return undefined;
  }
  digest(): Promise<string> {
    return Promise.resolve(this.h.digest('hex'));
  }
  discard(): void {}
}

export function createMd5(expectedSize: number): Md5 {
  return expectedSize >= WORKER_THRESHOLD ? new WorkerMd5() : new InlineMd5();
}

/**
 * MD5 hex of the first `size` bytes of a local file (a spool file, to compare with what XNAT
 * lists), hashed on the worker thread from WORKER_THRESHOLD on. Fewer bytes than `size` fail.
 */
export async function md5OfFile(path: string, size: number): Promise<string> {
  const md5 = createMd5(size);
  let seen = 0;
  try {
    if (size > 0) {
      for await (const chunk of createReadStream(path, { start: 0, end: size - 1, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
        md5.update(chunk);
        seen += chunk.length;
      }
    }
  } catch (err) {
    md5.discard();
    throw err;
  }
  if (seen !== size) {
    md5.discard();
    throw new Error(`${path} has ${seen} bytes, fewer than the ${size} to hash`);
  }
  return md5.digest();
}
