// Uploads of spooled files, foreground (flush/fsync waits for them) and background retries for
// the ones that failed: a spool file is deleted only once XNAT has the bytes, never before.
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import createDebug from 'debug';
import pLimit, { type LimitFunction } from 'p-limit';
import type { FileRef, Owner, XnatApi } from '../xnat/types.js';
import { XnatError } from '../xnat/types.js';
import { createMd5, md5OfFile } from './md5.js';
import { DEFAULT_STREAMING_LIMITS, StreamingUpload, type StreamingLimits } from './streaming-upload.js';

const log = createDebug('xnatfs:upload');

export interface UploadJob {
  owner: Owner;
  /** Resource label. */
  resource: string;
  /** Path inside the resource's files/. */
  path: string;
  spoolPath: string;
  size: number;
  overwrite: boolean;
  /** Mount path, for messages. */
  displayPath: string;
  /** The file this upload replaces on XNAT, as listed before: its cached bytes are dropped then. */
  replaces?: FileRef;
  /** When it was last changed here (ms): the time it showed while pending (resource-times.ts). */
  changedAt?: number;
}

interface Retry {
  job: UploadJob;
  /** The attempt under way. */
  running?: Promise<void>;
  timer: NodeJS.Timeout | null;
  attempts: number;
  lastError: string;
  onSuccess: () => Promise<void>;
  /** An attempt of these retries landed (XNAT answered, or holds our very bytes). */
  landed: boolean;
  /** The line on stderr about another file under this name was given (once per retried job). */
  toldNotOurs: boolean;
}

export interface UploaderOptions {
  concurrency: number;
  /** First delay of background retries; doubled up to maxRetryDelayMs. */
  retryDelayMs: number;
  maxRetryDelayMs: number;
  /**
   * Uploads that follow a file while it is written, at most (default: half of `concurrency`,
   * rounded down: none with a single upload slot). Each holds an HTTP connection until its
   * writer is done, so they are capped, not queued, and leave most connections to reads.
   */
  maxStreaming?: number;
  streamingLimits?: StreamingLimits;
}

export class Uploader {
  private readonly limit: LimitFunction;
  /** Jobs that failed in the foreground and are retried in the background, by spool path. */
  private readonly retrying = new Map<string, Retry>();
  private readonly running = new Set<Promise<unknown>>();
  /** Uploads under way (foreground, streaming, or a retry's attempt), by spool path. */
  private readonly inFlight = new Map<string, UploadJob>();
  /** Uploads that follow their file's writes, by spool path: their job has the size at their start. */
  private readonly followingWrites = new Map<string, StreamingUpload>();
  /** Spool files given a note at unmount while their upload was still under way (the note's write). */
  private readonly notedAtDrain = new Map<string, Promise<void>>();
  /**
   * Writes and removals of notes under way, by spool path, run one after another: a removal that
   * overtook an earlier write let that write bring the note back (a cancelled upload resumed by
   * the next mount), and drain() waits for them (a process exiting right after it cut notes off).
   */
  private readonly noteOps = new Map<string, Promise<void>>();
  private closed = false;
  /** Uploads that landed after drain() had ended (listed as unfinished), with the size sent. */
  private readonly landedAfterDrain = new Map<string, number>();
  private streaming = 0;
  /** Why streaming uploads are off for this mount (a server or proxy refused a chunked body). */
  private streamingRefused: string | null = null;
  /** MD5 of spool files compared with XNAT's after a "duplicates" answer, while they are unchanged. */
  private readonly spoolDigests = new Map<string, { size: number; mtimeMs: number; digest: string }>();
  /**
   * Versions of a spool file sent as a new file whose answer never came (the connection broke,
   * or XNAT did not answer in time), by spool path: XNAT may hold them. When the file is written
   * again before a retry finds out, the next upload meets that version as "duplicates"; it is
   * ours, and the new version replaces it. Forgotten once an upload of the file lands.
   */
  private readonly unanswered = new Map<string, Array<{ size: number; digest: string }>>();
  uploads = 0;

  constructor(
    private readonly client: XnatApi,
    private readonly options: UploaderOptions,
    /** Called after every successful upload (to refresh listings). */
    private readonly onUploaded: (job: UploadJob) => void,
  ) {
    this.limit = pLimit(Math.max(1, options.concurrency));
  }

  /** Upload now; resolves when XNAT has the file. The spool file is kept (the caller owns it). */
  upload(job: UploadJob): Promise<void> {
    this.inFlight.set(job.spoolPath, job);
    const p = this.limit(async () => {
      log('uploading %s (%d bytes, overwrite=%s)', job.displayPath, job.size, job.overwrite);
      await this.unlessOurs(job, () => this.client.uploadFile(job.owner, job.resource, job.path, { overwrite: job.overwrite, sourcePath: job.spoolPath, size: job.size }));
      this.uploads++;
      this.landed(job);
    });
    this.track(p, job);
    return p;
  }

  /**
   * Start uploading a file that is still being written: the body follows its spool file (see
   * StreamingUpload). Null when as many are under way as allowed, or when this server refused
   * one before; the file is then uploaded from the spool when it is closed.
   */
  startStreaming(job: UploadJob): StreamingUpload | null {
    if (this.closed || this.streamingRefused || this.streaming >= (this.options.maxStreaming ?? Math.floor(this.options.concurrency / 2))) return null;
    this.streaming++;
    log('uploading %s while it is written (overwrite=%s)', job.displayPath, job.overwrite);
    const upload: StreamingUpload = new StreamingUpload(
      job.spoolPath,
      // A "duplicates" answer comes after the whole body, so the size sent is known by then.
      (stream, signal) => this.unlessOurs(
        () => ({ ...job, size: upload.finalSize ?? job.size }),
        () => this.client.uploadFile(job.owner, job.resource, job.path, { overwrite: job.overwrite, stream, signal }),
      ),
      this.options.streamingLimits ?? DEFAULT_STREAMING_LIMITS,
    );
    this.inFlight.set(job.spoolPath, job);
    this.followingWrites.set(job.spoolPath, upload);
    const done = upload.result.then(
      () => {
        this.uploads++;
        // The job was made when the upload started; the size is known now.
        this.landed({ ...job, size: upload.finalSize ?? job.size });
      },
      (err: unknown) => {
        log('streaming upload of %s ended: %s', job.displayPath, messageOf(err));
        // A server or proxy that does not take chunked bodies answers one of these; uploads
        // from the spool, sent with a Content-Length, still work.
        const status = err instanceof XnatError ? err.status : null;
        if (status !== null && CHUNKED_REFUSED.has(status) && !this.streamingRefused) {
          this.streamingRefused = messageOf(err);
          console.error(`xnatfs: XNAT refused an upload sent while its file was being written (${this.streamingRefused}); files are uploaded when closed from now on`);
        }
      },
    );
    void done.finally(() => {
      this.streaming--;
      if (this.followingWrites.get(job.spoolPath) === upload) this.followingWrites.delete(job.spoolPath);
    });
    this.track(done, job);
    return upload;
  }

  /**
   * Hand over a job whose foreground upload failed: retried with backoff until it succeeds or
   * the mount is closed; `onSuccess` then decides what becomes of the spool file. A newer job
   * for the same spool file replaces an older one. Resolves once the note for the next mount is
   * on disk: a close() that reports the failure then promises a resume even if the process dies.
   */
  retryInBackground(job: UploadJob, error: unknown, onSuccess: () => Promise<void>): Promise<void> {
    // Retries ask for overwrite only when the first attempt did: a file that was new stays one
    // that never replaces anything. After a failed connection our own attempt may have landed
    // all the same; the retry then gets "duplicates" and finds our bytes there (unlessOurs).
    // Anyone else's file under that name is kept: retries keep failing until it is gone, and the
    // spool stays (listed at unmount). A "duplicates" answer was told by close() already.
    const told = error instanceof XnatError && error.kind === 'duplicate';
    return this.keepRetrying(job, messageOf(error), onSuccess, told);
  }

  /** Resolves once the note is on disk (the retries go on after). */
  private keepRetrying(job: UploadJob, lastError: string, onSuccess: () => Promise<void>, toldNotOurs = false): Promise<void> {
    const existing = this.retrying.get(job.spoolPath);
    if (existing?.timer) clearTimeout(existing.timer);
    const entry: Retry = { job, timer: null, attempts: existing?.attempts ?? 0, lastError, onSuccess, landed: false, toldNotOurs };
    this.retrying.set(job.spoolPath, entry);
    // A note beside the spool file says where it belongs, so that the next mount can finish the
    // upload if this process is killed first (a batch job's wall time, a reboot).
    // With the versions sent unanswered: the next mount may meet one of them on XNAT too.
    const noted = this.writeNote(job.spoolPath, { server: this.client.baseUrl, job: entry.job, unanswered: this.unanswered.get(job.spoolPath) ?? [] });
    this.schedule(entry);
    return noted;
  }

  /**
   * Take up uploads that an ended mount of the same server left unfinished in `spoolDir`: every
   * spool file with a note naming this server. Returns the jobs taken up.
   */
  async resume(spoolDir: string, onSuccess: (job: UploadJob) => Promise<void>): Promise<UploadJob[]> {
    const jobs = await this.waiting(spoolDir);
    // As the note says: a file that was new is still sent without overwrite (see retryInBackground).
    for (const job of jobs) void this.keepRetrying(job, 'left by an earlier mount', () => onSuccess(job));
    return jobs;
  }

  /** The uploads `resume` would take up from `spoolDir`, read without touching anything. */
  async waiting(spoolDir: string): Promise<UploadJob[]> {
    const jobs: UploadJob[] = [];
    for (const name of await readdir(spoolDir).catch(() => [] as string[])) {
      if (!name.endsWith(NOTE_SUFFIX)) continue;
      try {
        const note = JSON.parse(await readFile(join(spoolDir, name), 'utf8')) as { server: string; job: UploadJob; unanswered?: Array<{ size: number; digest: string }> };
        const spoolPath = join(spoolDir, name.slice(0, -NOTE_SUFFIX.length));
        if (note.server !== this.client.baseUrl || (await stat(spoolPath)).size !== note.job.size) continue;
        jobs.push({ ...note.job, spoolPath });
        if (note.unanswered?.length && !this.unanswered.has(spoolPath)) this.unanswered.set(spoolPath, note.unanswered);
      } catch (err) {
        log('spool note %s unreadable: %s', name, messageOf(err));
      }
    }
    return jobs;
  }

  /**
   * Forget a queued retry (the file was deleted, renamed or rewritten). Resolves once an attempt
   * already under way has ended, so the caller knows whether it landed (it then checks XNAT),
   * with the job those retries ran and whether one of them landed: XNAT then holds our copy, and
   * the next upload of this file replaces it.
   */
  async cancel(spoolPath: string): Promise<{ job: UploadJob; landed: boolean } | undefined> {
    const e = this.retrying.get(spoolPath);
    if (!e) return undefined;
    if (e.timer) clearTimeout(e.timer);
    this.retrying.delete(spoolPath);
    this.spoolDigests.delete(spoolPath);
    await this.removeNote(spoolPath);
    await e.running?.catch(() => undefined);
    return { job: e.job, landed: e.landed };
  }

  isRetrying(spoolPath: string): boolean {
    return this.retrying.has(spoolPath);
  }

  pending(): Array<{ displayPath: string; spoolPath: string; attempts: number; lastError: string }> {
    return [...this.retrying.values()].map((e) => ({ displayPath: e.job.displayPath, spoolPath: e.job.spoolPath, attempts: e.attempts, lastError: e.lastError }));
  }

  /**
   * At unmount: retry everything pending right away and wait (bounded) for uploads in flight.
   * Returns what is still not on the server; those spool files are left on disk.
   */
  async drain(timeoutMs: number): Promise<ReturnType<Uploader['pending']>> {
    const deadline = Date.now() + timeoutMs;
    // Each waiting retry goes once right away. One that fails again keeps its backoff: sent again
    // as soon as it failed, it hammered an XNAT that answers 500 some hundred times a second for
    // the whole --upload-wait.
    for (const e of this.retrying.values()) {
      if (e.timer) {
        clearTimeout(e.timer);
        e.timer = null;
        this.attemptTracked(e);
      }
    }
    while (Date.now() < deadline && (this.retrying.size > 0 || this.running.size > 0)) {
      const tick = new Promise((r) => setTimeout(r, Math.max(0, Math.min(200, deadline - Date.now()))));
      await (this.running.size > 0 ? Promise.race([Promise.allSettled([...this.running]), tick]) : tick);
    }
    this.closed = true;
    for (const e of this.retrying.values()) if (e.timer) clearTimeout(e.timer);
    // Uploads still under way (a file closed just before, one uploaded at release after close()
    // had returned) are not on XNAT either: listed, and noted for the next mount, since this
    // process may end before they do. One that lands meanwhile takes its note away again. The
    // note keeps the job's overwrite: if this attempt lands unanswered, the next mount's upload
    // of a new file gets "duplicates" and finds our bytes there.
    const running = await this.noteInFlight();
    await Promise.all(this.noteOps.values());
    return [
      ...this.pending(),
      ...running.map((job) => ({ displayPath: job.displayPath, spoolPath: job.spoolPath, attempts: 0, lastError: `still uploading when the wait at unmount ended` })),
    ];
  }

  /**
   * The size XNAT got of `spoolPath` from an upload that landed after drain() had listed it as
   * unfinished (XNAT answered while the process logged out), or null. Waits for its note's removal.
   */
  async landedSinceDrain(spoolPath: string): Promise<number | null> {
    await Promise.all(this.noteOps.values());
    return this.landedAfterDrain.get(spoolPath) ?? null;
  }

  /**
   * Write a note beside the spool file of every upload under way that has none (a background
   * retry has one), so that the next mount takes it up if this process ends first: at the end
   * of the wait at unmount, or when a second signal makes the process exit at once. Returns
   * those uploads.
   */
  async noteInFlight(): Promise<UploadJob[]> {
    // An upload that followed the writes was started with the size at 8 MiB. Once its writer has
    // closed the file (finish), the note gives the size written in all: with the starting size the
    // next mount found a spool file of another size, skipped the note and called a complete file
    // "partly written". One whose writer has not finished keeps that size, so the next mount does
    // not upload a file cut short.
    const running = [...this.inFlight.values()]
      .filter((job) => !this.retrying.has(job.spoolPath))
      .map((job) => {
        const size = this.followingWrites.get(job.spoolPath)?.finalSize;
        return size === null || size === undefined ? job : { ...job, size };
      });
    for (const job of running) {
      if (this.notedAtDrain.has(job.spoolPath)) continue;
      this.notedAtDrain.set(job.spoolPath, this.writeNote(job.spoolPath, { server: this.client.baseUrl, job, unanswered: this.unanswered.get(job.spoolPath) ?? [] }));
    }
    await Promise.all(running.map((job) => this.notedAtDrain.get(job.spoolPath)));
    return running;
  }

  /**
   * Send an upload; when XNAT answers "duplicates" to one without overwrite (a file that was new
   * when written), find out whether the file it kept is ours: an earlier attempt whose answer was
   * lost (the connection dropped after the body went out, or a killed mount's last upload) may
   * have landed. Same size and MD5 as the spool file: done. Anything else, or no MD5 listed (the
   * size alone proves nothing), is someone else's file, which is never replaced: a 'duplicate'
   * XnatError saying so. `jobNow` gives the job as sent (a streamed upload knows its size last).
   */
  private async unlessOurs(jobNow: UploadJob | (() => UploadJob), send: () => Promise<void>): Promise<void> {
    try {
      await send();
      return;
    } catch (err) {
      const job = typeof jobNow === 'function' ? jobNow() : jobNow;
      if (err instanceof XnatError && err.kind === 'network' && !job.overwrite) await this.noteUnanswered(job);
      if (!(err instanceof XnatError && err.kind === 'duplicate') || job.overwrite) throw err;
      const { theirs, listed } = await this.compareWithXnat(job, err);
      if (theirs === null) {
        log('%s: XNAT answered duplicates, and the file it has is ours (same size and MD5): uploaded', job.displayPath);
        return;
      }
      const earlier = listed?.digest ? this.unanswered.get(job.spoolPath) : undefined;
      if (earlier?.some((v) => v.size === listed!.size && v.digest === listed!.digest)) {
        // An earlier version of this very file, sent when it was new, landed unanswered: ours to replace.
        log('%s: XNAT holds an earlier version of ours whose answer was lost; replacing it', job.displayPath);
        await this.client.uploadFile(job.owner, job.resource, job.path, { overwrite: true, sourcePath: job.spoolPath, size: job.size });
        return;
      }
      throw new XnatError('duplicate', `another file named '${job.path}' is on XNAT in resource '${job.resource}' (${theirs}); it was not replaced`, err.status, { cause: err });
    }
  }

  /** The version just sent may have landed without an answer: remember its size and MD5. */
  private async noteUnanswered(job: UploadJob): Promise<void> {
    try {
      const digest = await this.spoolDigest(job);
      const known = this.unanswered.get(job.spoolPath) ?? [];
      if (!known.some((v) => v.size === job.size && v.digest === digest)) known.push({ size: job.size, digest });
      this.unanswered.set(job.spoolPath, known.slice(-8));
    } catch (e) {
      log('%s: no MD5 of the version sent (%s)', job.displayPath, messageOf(e)); // changed or gone meanwhile
    }
  }

  /** `theirs` null when XNAT's file at the job's path has the spool file's size and MD5; else how it differs. */
  private async compareWithXnat(job: UploadJob, duplicate: XnatError): Promise<{ theirs: string | null; listed?: { size: number; digest: string } }> {
    let entries;
    try {
      entries = await this.client.listFiles(job.owner, job.resource);
    } catch (err) {
      // Not proven ours: kept like anyone else's file, and compared again at the next retry.
      throw new XnatError('duplicate', `XNAT already has a file named '${job.path}' in resource '${job.resource}' and listing it to compare with ours failed (${messageOf(err)}); it was not replaced`, duplicate.status, { cause: err });
    }
    const found = entries.find((e) => e.path === job.path);
    if (!found) return { theirs: 'not in its listing of the resource' };
    const sameSize = found.size === job.size;
    let digest = found.digest.toLowerCase();
    // An XNAT with checksums off lists no MD5, and the size alone proves nothing: its copy is
    // fetched and hashed here, when it could be ours (our size, or that of a version of ours
    // sent unanswered). Only ever after a duplicates answer.
    const couldBeOurs = sameSize || (this.unanswered.get(job.spoolPath) ?? []).some((v) => v.size === found.size);
    if (!digest && couldBeOurs && found.size <= COMPARE_BY_DOWNLOAD_MAX_BYTES) {
      try {
        digest = await this.digestOnXnat(job, found);
      } catch (err) {
        throw new XnatError('duplicate', `XNAT already has a file named '${job.path}' in resource '${job.resource}' and fetching it to compare with ours failed (${messageOf(err)}); it was not replaced`, duplicate.status, { cause: err });
      }
    }
    const listed = { size: found.size, digest };
    if (!sameSize) return { theirs: `${found.size} bytes, ours ${job.size}`, listed };
    if (!digest) return { theirs: `${found.size} bytes like ours, but XNAT lists no MD5 to tell them apart and the file is too large to fetch for that`, listed };
    const ours = await this.spoolDigest(job);
    return { theirs: digest === ours ? null : `MD5 ${digest}, ours ${ours}`, listed };
  }

  /** MD5 of XNAT's copy of the file at the job's path, fetched whole. */
  private async digestOnXnat(job: UploadJob, entry: { size: number; uri: string }): Promise<string> {
    const res = await this.client.readFile({ owner: job.owner, resource: job.resource, path: job.path, size: entry.size, digest: '', ...(entry.uri ? { uri: entry.uri } : {}) });
    const md5 = createMd5(entry.size);
    let seen = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        md5.update(chunk);
        seen += chunk.length;
      }
    } catch (err) {
      md5.discard();
      throw err;
    }
    if (seen !== entry.size) {
      md5.discard();
      throw new Error(`XNAT sent ${seen} bytes of the ${entry.size} it lists`);
    }
    return md5.digest();
  }

  private async spoolDigest(job: UploadJob): Promise<string> {
    const st = await stat(job.spoolPath);
    const known = this.spoolDigests.get(job.spoolPath);
    if (known && known.size === job.size && known.mtimeMs === st.mtimeMs) return known.digest;
    const digest = await md5OfFile(job.spoolPath, job.size);
    // Kept while the spool file is unchanged: a retry against someone else's file hashes it once.
    this.spoolDigests.set(job.spoolPath, { size: job.size, mtimeMs: st.mtimeMs, digest });
    return digest;
  }

  /** XNAT has the file. */
  private landed(job: UploadJob): void {
    if (this.closed) this.landedAfterDrain.set(job.spoolPath, job.size);
    this.spoolDigests.delete(job.spoolPath);
    this.unanswered.delete(job.spoolPath);
    const noted = this.notedAtDrain.get(job.spoolPath);
    if (noted) {
      this.notedAtDrain.delete(job.spoolPath);
      void this.removeNote(job.spoolPath);
    }
    this.onUploaded(job);
  }

  /** Write the note of `spoolPath` whole (a temporary file renamed): never a cut one to the next mount. */
  private writeNote(spoolPath: string, note: object): Promise<void> {
    return this.noteOp(spoolPath, async () => {
      const tmp = `${noteOf(spoolPath)}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        await writeFile(tmp, JSON.stringify(note), { mode: 0o600 });
        await rename(tmp, noteOf(spoolPath));
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw err;
      }
    });
  }

  private removeNote(spoolPath: string): Promise<void> {
    return this.noteOp(spoolPath, () => unlink(noteOf(spoolPath)));
  }

  private noteOp(spoolPath: string, op: () => Promise<void>): Promise<void> {
    const next = (this.noteOps.get(spoolPath) ?? Promise.resolve()).then(op).catch(() => undefined);
    this.noteOps.set(spoolPath, next);
    void next.then(() => {
      if (this.noteOps.get(spoolPath) === next) this.noteOps.delete(spoolPath);
    });
    return next;
  }

  private schedule(entry: Retry): void {
    if (this.closed) return;
    const delay = Math.min(this.options.maxRetryDelayMs, this.options.retryDelayMs * 2 ** entry.attempts);
    entry.timer = setTimeout(() => {
      entry.timer = null;
      this.attemptTracked(entry);
    }, delay);
    entry.timer.unref();
  }

  /**
   * An attempt, waited for by drain() to its end: after a success it still takes the note and,
   * through onSuccess, the spool file away, which a process exiting right after the drain skipped.
   */
  private attemptTracked(entry: Retry): void {
    const p = this.attempt(entry);
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  private async attempt(entry: Retry): Promise<void> {
    entry.attempts++;
    try {
      // Marked before anyone awaiting `running` (cancel) goes on.
      entry.running = this.upload(entry.job).then(() => {
        entry.landed = true;
      });
      await entry.running;
      if (this.retrying.get(entry.job.spoolPath) !== entry) return; // superseded meanwhile
      this.retrying.delete(entry.job.spoolPath);
      await this.removeNote(entry.job.spoolPath);
      await entry.onSuccess().catch(() => undefined);
      console.error(`xnatfs: uploaded ${entry.job.displayPath} after ${entry.attempts} background retr${entry.attempts === 1 ? 'y' : 'ies'}`);
    } catch (err) {
      entry.lastError = messageOf(err);
      log('background upload of %s failed (%s)', entry.job.displayPath, entry.lastError);
      if (err instanceof XnatError && err.kind === 'duplicate' && !entry.toldNotOurs && this.retrying.get(entry.job.spoolPath) === entry) {
        // Once per file: its retries go on (the other file may be removed), and unmount lists it.
        entry.toldNotOurs = true;
        console.error(`xnatfs: ${entry.job.displayPath} not uploaded: ${entry.lastError}; ours is kept in ${entry.job.spoolPath} and retried until that name is free`);
      }
      if (this.retrying.get(entry.job.spoolPath) === entry) this.schedule(entry);
    }
  }

  private track(p: Promise<unknown>, job: UploadJob): void {
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.running.add(settled);
    void settled.then(() => {
      this.running.delete(settled);
      if (this.inFlight.get(job.spoolPath) === job) this.inFlight.delete(job.spoolPath);
    });
  }
}

const NOTE_SUFFIX = '.upload.json';

/** Without a listed MD5, XNAT's copy of a file up to this size is fetched to compare it with ours. */
const COMPARE_BY_DOWNLOAD_MAX_BYTES = 1024 * 2 ** 20;

/** Length Required, Bad Request, Payload Too Large, Unsupported Media Type, Not Implemented … */
const CHUNKED_REFUSED = new Set([400, 411, 413, 415, 417, 501, 505]);

/** The note that says where a spool file belongs. */
export function noteOf(spoolPath: string): string {
  return `${spoolPath}${NOTE_SUFFIX}`;
}

function messageOf(err: unknown): string {
  if (err instanceof XnatError) return err.message;
  return err instanceof Error ? err.message : String(err);
}
