// Builds the whole filesystem over one XNAT client: catalogue → content → fs operations.
// The CLI mounts what this returns; tests drive `ops` directly without FUSE.
import { mkdir, readdir, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Catalogue } from '../catalogue/catalogue.js';
import { ResourceTimes } from '../catalogue/resource-times.js';
import { ContentStore, type PrefetchOptions } from '../content/content-store.js';
import { DiskCache } from '../content/disk-cache.js';
import { Uploader, type UploadJob } from '../content/uploader.js';
import { orphanedFolders, ownFolder } from '../content/process-dirs.js';
import type { XnatApi } from '../xnat/types.js';
import { createOperations, type UnfinishedWrite, type XnatFs } from './operations.js';

export interface StackOptions {
  cacheDir: string;
  cacheBytes: number;
  listingTtlMs: number;
  readOnly: boolean;
  /** Defaults: on, 12 parallel, zip (stored, not deflated) for ≥ 16 files of a resource ≤ 256 MiB. */
  prefetch?: Partial<PrefetchOptions>;
  uploadConcurrency: number;
  /** Background retry delays for failed uploads. */
  uploadRetryDelayMs?: number;
  uploadMaxRetryDelayMs?: number;
  idleUploadMs?: number;
  /** A file written from its start is uploaded while written once it reaches this size (default 8 MiB). */
  streamUploadBytes?: number;
  downloadAttempts?: number;
}

export interface XnatFsStack extends XnatFs {
  catalogue: Catalogue;
  content: ContentStore;
  uploader: Uploader;
  spoolDir: string;
  /** Uploads left unfinished by an earlier mount of this server, retried in the background. */
  resumedUploads: string[];
  /** Read-only: such uploads found and left as they are, for the next read-write mount. */
  waitingUploads: string[];
  /** Spool files of an earlier run that cannot be resumed (no note: never completely written). */
  leftoverSpool: string[];
  /**
   * Stop taking writes, wait (bounded) for files still being written and for pending uploads,
   * stop downloads; returns what never made it to XNAT.
   */
  shutdown(uploadWaitMs: number): Promise<UnfinishedWrite[]>;
  /**
   * What of shutdown()'s list is still not on XNAT, asked once the process is about to exit:
   * an upload XNAT answered since (during the logout) is dropped from it, with its spool file.
   */
  stillUnfinished(left: UnfinishedWrite[]): Promise<UnfinishedWrite[]>;
}

export async function createStack(client: XnatApi, o: StackOptions): Promise<XnatFsStack> {
  const cache = new DiskCache({ dir: o.cacheDir, maxBytes: o.cacheBytes });
  await cache.init();
  const spoolRoot = join(o.cacheDir, 'spool');
  await mkdir(spoolRoot, { recursive: true, mode: 0o700 });
  const orphans = await orphanedFolders(spoolRoot);
  const spoolDir = await ownFolder(spoolRoot);

  // Files keep the time this cache first saw their resource as it is: make, snakemake and
  // rsync see nothing new after a remount.
  const times = new ResourceTimes(join(o.cacheDir, 'resource-times.json'));
  await times.load();
  const catalogue = new Catalogue(client, { ttlMs: o.listingTtlMs, times });
  const content = new ContentStore(client, {
    server: client.baseUrl,
    cache,
    download: { maxAttempts: o.downloadAttempts ?? 5, retryDelayMs: 200 },
    prefetch: {
      enabled: true,
      // Small DICOM files cost a round trip each: enough in flight to hide 20–50 ms of latency.
      concurrency: 12,
      maxFileBytes: 256 * 2 ** 20,
      maxFolderBytes: Math.min(2 ** 30, Math.floor(o.cacheBytes / 4)),
      zipMinFiles: 16,
      zipMaxBytes: Math.min(256 * 2 ** 20, Math.floor(o.cacheBytes / 4)),
      zipCompression: 0,
      ...o.prefetch,
    },
  });
  let fs: XnatFs | null = null;
  const uploader = new Uploader(
    client,
    { concurrency: o.uploadConcurrency, retryDelayMs: o.uploadRetryDelayMs ?? 2000, maxRetryDelayMs: o.uploadMaxRetryDelayMs ?? 60_000 },
    (job: UploadJob) => fs?.onUploaded(job),
  );
  const writes = (fs = createOperations({
    catalogue,
    content,
    client,
    uploader,
    spoolDir,
    readOnly: o.readOnly,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    mountTime: new Date(),
    idleUploadMs: o.idleUploadMs ?? 1000,
    // Below this the upload at close() is quick anyway, and it keeps its Content-Length.
    streamUploadBytes: o.streamUploadBytes ?? 8 * 2 ** 20,
  }));
  // Uploads that ended mounts of this server left unfinished are taken up again; spool files
  // without a note (the process died while they were being written) are only reported.
  // A read-only mount promises to write nothing: it counts them and leaves the spool as it is.
  const resumed: UploadJob[] = [];
  const waiting: UploadJob[] = [];
  const leftoverSpool: string[] = [];
  for (const dir of orphans) {
    const own = dir === spoolDir; // an earlier mount in this same process
    const jobs = o.readOnly
      ? await uploader.waiting(dir)
      : await uploader.resume(dir, async (job) => {
          await unlink(job.spoolPath).catch(() => undefined);
          if (!own) await rmdir(dir).catch(() => undefined); // once empty
        });
    (o.readOnly ? waiting : resumed).push(...jobs);
    const taken = new Set(jobs.map((j) => j.spoolPath));
    // Not the notes, nor one a killed process left half-written (written aside, then renamed).
    const left = (await readdir(dir)).map((n) => join(dir, n)).filter((p) => !/\.upload\.json(\.[0-9a-f]+\.tmp)?$/.test(p) && !taken.has(p));
    leftoverSpool.push(...left);
    if (!o.readOnly && !own && jobs.length === 0 && left.length === 0) await rm(dir, { recursive: true, force: true });
  }
  return {
    ...writes,
    resumedUploads: resumed.map((j) => j.displayPath),
    waitingUploads: waiting.map((j) => j.displayPath),
    catalogue,
    content,
    uploader,
    spoolDir,
    leftoverSpool,
    async shutdown(uploadWaitMs) {
      // Writes first (no new ones; those in progress may finish), so that every upload they
      // start is inside the drain and in its report.
      const deadline = Date.now() + uploadWaitMs;
      const open = await writes.finishWrites(deadline);
      const left = await uploader.drain(Math.max(0, deadline - Date.now()));
      await content.close();
      await times.flush();
      // This process's working folders, if nothing is left in them (rmdir leaves full ones alone).
      await rmdir(spoolDir).catch(() => undefined);
      await rmdir(cache.partialDir).catch(() => undefined);
      // A file whose close() still waits for its upload is in both lists: once, as uploading.
      const listed = new Set(left.map((l) => l.spoolPath));
      return [...left, ...open.filter((o) => !listed.has(o.spoolPath))];
    },
    async stillUnfinished(left) {
      // An upload still under way when the wait ended goes on while xnatfs unmounts and logs
      // out (up to 5 s, and XNAT answers a large file only once it has stored it). One that
      // landed meanwhile was reported as not on XNAT (exit 3), and its spool file, which no
      // release took away any more, was called "partly written" by the next mount.
      const out: UnfinishedWrite[] = [];
      for (const l of left) {
        const sent = await uploader.landedSinceDrain(l.spoolPath);
        const now = sent === null ? null : await stat(l.spoolPath).then((s) => s.size, () => sent);
        if (sent !== null && now === sent) await unlink(l.spoolPath).catch(() => undefined);
        else out.push(l);
      }
      await rmdir(spoolDir).catch(() => undefined);
      return out;
    },
  };
}
