// `xnatfs mount URL MOUNTPOINT`: log in, mount in the foreground, stay until SIGINT/SIGTERM or
// `xnatfs unmount`, then wait (bounded) for pending uploads, unmount, log out and exit.
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import createDebug from 'debug';
import { createStack, type StackOptions, type XnatFsStack } from '../fs/stack.js';
import { mountFuse, type FuseMount } from '../fs/fuse-adapter.js';
import { constants } from 'node:fs';
import { access, mkdir, readFile } from 'node:fs/promises';
import { prepareMountpoint, whatIsMounted } from '../fs/mountpoint.js';
import { createXnatClient, normalizeBaseUrl, type XnatClientOptions } from '../xnat/client.js';
import type { XnatApi } from '../xnat/types.js';
import { defaultCacheDir, parseCount, parseSize, UsageError } from './args.js';

const log = createDebug('xnatfs:cli');

export const MOUNT_HELP = `Usage: xnatfs mount URL MOUNTPOINT [options]

Mounts the XNAT server at URL on MOUNTPOINT (an existing empty directory) and stays in the
foreground until Ctrl-C, SIGTERM or \`xnatfs unmount MOUNTPOINT\`. URL is the server's address
with any context path (https://host/xnat); a REST path such as /data is dropped, with a note.

Credentials (never on the command line): XNAT_USER/XNAT_PASS, ~/.netrc (chmod 600) with
"machine HOST login USER password PASS", an alias token used as user and password, an existing
session (XNAT_JSESSION or --jsession), or a prompt on a terminal.

Options:
  --user NAME            XNAT user or alias token (password from XNAT_PASS, netrc or prompt)
  --jsession ID          reuse a browser session's JSESSIONID (prefer XNAT_JSESSION: argv is public)
  --read-only            mount ro: every write gets EROFS and nothing is uploaded (uploads left by
                         an earlier mount wait for a read-write one); reads a little faster
  --cache-dir DIR        downloaded files and upload spool, mode 0700 (default
                         $XDG_CACHE_HOME/xnatfs, else ~/.cache/xnatfs)
  --cache-size SIZE      disk cache bound, e.g. 20G (default 10G)
  --ttl SECONDS          how long listings are trusted (default 600; the archive rarely changes);
                         0: none is reused, every listing asks XNAT again (much slower: each
                         path is resolved from the top, a listing per level; no prefetch)
  --max-concurrency N    HTTP requests in flight at once (default 8; prefetch takes at most 3/4)
  --no-prefetch          don't fetch the rest of a folder once a program reads through it,
                         nor the next folder it listed
  --prefetch-concurrency N  parallel prefetch downloads (default 12)
  --zip-compression N    deflate level (0-9) asked of XNAT for prefetch zips (default 0: XNAT
                         deflates slower than a campus network; raise it on slow links)
  --op-timeout SECONDS   answer ETIMEDOUT when a listing takes this long (default 120; reads,
                         writes and uploads are bounded by the HTTP timeouts instead: a read
                         fails with EIO once XNAT has not answered it for 60 s)
  --upload-wait SECONDS  at unmount, how long to wait for uploads still pending (default 300)
  --ca-file FILE         trust this extra CA certificate (PEM); TLS is always verified
  --allow-other          let other users see the mount (needs user_allow_other in /etc/fuse.conf)
  --debug                verbose logs (same as DEBUG=xnatfs:*)
`;

export interface MountSettings {
  /** Normalised (normalizeBaseUrl). */
  url: string;
  /** One line for stderr when the URL given was changed beyond a trailing slash. */
  urlNote?: string;
  mountpoint: string;
  client: Omit<XnatClientOptions, 'baseUrl'>;
  stack: StackOptions;
  opTimeoutMs: number;
  uploadWaitMs: number;
  allowOther: boolean;
}

export function parseMountArgs(argv: string[]): MountSettings {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      user: { type: 'string' },
      jsession: { type: 'string' },
      'read-only': { type: 'boolean', default: false },
      'cache-dir': { type: 'string' },
      'cache-size': { type: 'string' },
      ttl: { type: 'string' },
      'max-concurrency': { type: 'string' },
      'no-prefetch': { type: 'boolean', default: false },
      'prefetch-concurrency': { type: 'string' },
      'zip-compression': { type: 'string' },
      'op-timeout': { type: 'string' },
      'upload-wait': { type: 'string' },
      'ca-file': { type: 'string' },
      'allow-other': { type: 'boolean', default: false },
      debug: { type: 'boolean', default: false },
      password: { type: 'string' },
    },
  });
  if (values.password !== undefined) {
    throw new UsageError('a password on the command line is visible to every user (ps): use XNAT_PASS, ~/.netrc or the prompt');
  }
  if (positionals.length !== 2) throw new UsageError('mount needs URL and MOUNTPOINT');
  if (values.debug) createDebug.enable('xnatfs:*');
  const maxConcurrency = parseCount(values['max-concurrency'], '--max-concurrency', 8, 1);
  const cacheBytes = values['cache-size'] ? parseSize(values['cache-size'], '--cache-size') : 10 * 2 ** 30;
  // Normalised once, here: the cache folder is named after it, and the uploads an earlier mount
  // left unfinished are found only under the same name.
  const { baseUrl: url, user: urlUser, dropped } = normalizeBaseUrl(positionals[0]!);
  const user = values.user ?? urlUser;
  return {
    url,
    ...(dropped ? { urlNote: `using ${url}: xnatfs adds XNAT's REST path itself, so ${dropped} was dropped from the URL` } : {}),
    mountpoint: resolve(positionals[1]!),
    client: {
      ...(user ? { user } : {}),
      ...(values.jsession ? { jsession: values.jsession } : {}),
      ...(values['ca-file'] ? { caFile: values['ca-file'] } : {}),
      maxConcurrency,
    },
    stack: {
      cacheDir: cacheDirFor(values['cache-dir'] ?? defaultCacheDir(), url),
      cacheBytes,
      listingTtlMs: parseCount(values.ttl, '--ttl', 600, 0) * 1000,
      readOnly: values['read-only'] ?? false,
      prefetch: {
        enabled: !values['no-prefetch'],
        ...(values['prefetch-concurrency'] ? { concurrency: parseCount(values['prefetch-concurrency'], '--prefetch-concurrency', 12, 1) } : {}),
        ...(values['zip-compression'] ? { zipCompression: Math.min(9, parseCount(values['zip-compression'], '--zip-compression', 0, 0)) } : {}),
      },
      uploadConcurrency: Math.max(1, Math.floor(maxConcurrency / 2)),
    },
    opTimeoutMs: parseCount(values['op-timeout'], '--op-timeout', 120, 0) * 1000,
    uploadWaitMs: parseCount(values['upload-wait'], '--upload-wait', 300, 0) * 1000,
    allowOther: values['allow-other'] ?? false,
  };
}

/**
 * How long the kernel may keep attributes and names: never longer than the listings they come
 * from (--ttl 0: not at all, every lookup reaches xnatfs), and at most 60 s.
 */
export function kernelCacheSeconds(listingTtlMs: number): number {
  return Math.max(0, Math.min(60, listingTtlMs / 1000));
}

/** One cache folder per server (`url` normalised), so two servers' files never mix. */
export function cacheDirFor(base: string, url: string): string {
  const host = (() => {
    try {
      return new URL(url).host.replace(/[^A-Za-z0-9.-]/g, '_');
    } catch {
      return 'server';
    }
  })();
  return join(base, `${host}-${createHash('sha256').update(url).digest('hex').slice(0, 8)}`);
}

/**
 * The line about spool files an earlier, killed mount left without a note (never completely
 * written, so never uploaded). It names the folders they are in: those of the dead process, not
 * this mount's own spool folder, which holds none of them.
 */
export function leftoverSpoolNote(paths: string[]): string {
  const dirs = [...new Set(paths.map((p) => dirname(p)))];
  const n = paths.length;
  // Only the user knows whether they are worth anything, so they stay: the line says how to stop
  // it coming back at every mount.
  return `${n} partly written file${n === 1 ? '' : 's'} from an earlier mount that was killed ${n === 1 ? 'was' : 'were'} not uploaded and ${n === 1 ? 'is' : 'are'} kept in ${dirs.join(', ')}; copy ${n === 1 ? 'it' : 'them'} again if you need ${n === 1 ? 'it' : 'them'}, then delete ${dirs.length === 1 ? 'that folder' : 'those folders'} (until then every mount says this)`;
}

export interface RunningMount {
  client: XnatApi;
  stack: XnatFsStack;
  fuse: FuseMount;
  mountpoint: string;
  /** Resolves when the mount ended (signal, external unmount, or stop()). */
  done: Promise<number>;
  stop(): Promise<number>;
  /** stop() has begun (a signal, or an unmount from outside noticed). */
  stopping(): boolean;
}

/** Log in, build the stack and mount. The caller waits on `done`. */
export async function startMount(s: MountSettings, client?: XnatApi): Promise<RunningMount> {
  const xnat = client ?? (await createXnatClient({ baseUrl: s.url, ...s.client }));
  let stack: XnatFsStack | null = null;
  let fuse: FuseMount;
  try {
    stack = await createStack(xnat, s.stack);
    for (const path of stack.resumedUploads) console.error(`xnatfs: uploading ${path}, left unfinished by an earlier mount`);
    if (stack.waitingUploads.length > 0) {
      console.error(`xnatfs: ${stack.waitingUploads.length} upload(s) left unfinished by an earlier mount are waiting; this mount is read-only and leaves them as they are: a read-write mount of the same server will resume them`);
    }
    if (stack.leftoverSpool.length > 0) console.error(`xnatfs: ${leftoverSpoolNote(stack.leftoverSpool)}`);
    fuse = await mountFuse(stack.ops, {
      mountpoint: s.mountpoint,
      fsname: `xnatfs#${xnat.baseUrl}`,
      kernelCache: true,
      attrTimeout: kernelCacheSeconds(s.stack.listingTtlMs),
      entryTimeout: kernelCacheSeconds(s.stack.listingTtlMs),
      bigWrites: true,
      allowOther: s.allowOther,
      readOnly: s.stack.readOnly,
      opTimeoutMs: s.opTimeoutMs,
      // Data operations wait for whole transfers (a read at EOF for the download and its digest,
      // a flush for the upload): the HTTP layer's own timeouts bound them, not the op timeout.
      opTimeouts: { open: false, create: false, read: false, write: false, truncate: false, ftruncate: false, flush: false, fsync: false, release: false, rename: false },
    });
  } catch (err) {
    await stack?.shutdown(0).catch(() => undefined);
    await xnat.close().catch(() => undefined);
    throw err;
  }
  const st = stack;
  // Every path starts with the project list: fetch it now rather than on the first lookup.
  void st.catalogue.projects().catch(() => undefined);
  let stopping: Promise<number> | null = null;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  /** `detached`: already unmounted from outside; the path may hold someone else's mount now. */
  const stop = (how: { detached?: boolean } = {}): Promise<number> => {
    stopping ??= (async () => {
      const waitS = Math.round(s.uploadWaitMs / 1000);
      if (st.uploader.pending().length > 0) console.error(`xnatfs: waiting up to ${waitS} s for ${st.uploader.pending().length} pending upload(s)…`);
      const listed = await st.shutdown(s.uploadWaitMs);
      let code = 0;
      try {
        // Also when `xnatfs unmount` already detached it: only fuse.unmount() releases
        // fuse-native's handle, which otherwise keeps this process alive forever.
        await fuse.unmount(how);
      } catch (err) {
        console.error(`xnatfs: ${(err as Error).message}`);
        code = 1;
      }
      await xnat.close().catch((err: unknown) => log('logout failed: %O', err));
      // Uploads still under way go on until here: XNAT may have answered one meanwhile.
      const left = await st.stillUnfinished(listed);
      if (left.length > 0) {
        console.error(`xnatfs: ${left.length} upload(s) did not reach XNAT; the data is kept:`);
        for (const p of left) console.error(`  ${p.displayPath}  ← ${p.spoolPath}  (${p.lastError})`);
        code = 3;
      }
      resolveDone(code);
      return code;
    })();
    return stopping;
  };

  // `xnatfs unmount` (or fusermount -u) detaches the mount without telling this process.
  const rootMtimeMs = (await st.ops.getattr!('/')).mtime.getTime();
  let checking = false;
  const watch = setInterval(() => {
    if (checking || stopping) return;
    checking = true;
    void whatIsMounted(s.mountpoint, rootMtimeMs)
      .then((there) => {
        if (there === 'ours' || stopping) return;
        log('mount point %s was unmounted from outside (%s)', s.mountpoint, there);
        if (there === 'stale') console.error(`xnatfs: the FUSE connection of ${s.mountpoint} ended (aborted, or lost by the kernel); unmounting`);
        // A stale mount is cleared; someone else's live mount is left alone.
        void stop({ detached: there === 'gone' });
      })
      .finally(() => (checking = false));
  }, 1000);
  void done.then(() => clearInterval(watch));

  return { client: xnat, stack: st, fuse, mountpoint: s.mountpoint, done, stop, stopping: () => stopping !== null };
}

/** Stop on the first SIGINT/SIGTERM; a second one exits at once. */
export function stopOnSignals(m: RunningMount): void {
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) {
      console.error(`xnatfs: second ${sig}, exiting without waiting`);
      // Uploads under way get their notes first (at most a second), so the next mount resumes
      // them instead of calling their spool files partly written.
      const noted = m.stack.uploader.noteInFlight().catch(() => []);
      const cap = new Promise((r) => setTimeout(r, 1000).unref());
      void Promise.race([noted, cap]).finally(() => process.exit(130));
      return;
    }
    signalled = true;
    // After `xnatfs unmount` the process is already waiting for its uploads: say that, not
    // "unmounting" again (a batch system's SIGTERM at the end of a job would look like a restart).
    console.error(m.stopping()
      ? `xnatfs: ${sig}: ${m.mountpoint} is already unmounted; still waiting for pending uploads; another ${sig} exits now and leaves them to the next mount`
      : `xnatfs: ${sig}: unmounting ${m.mountpoint}`);
    void m.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/**
 * --allow-other for an ordinary user needs user_allow_other in /etc/fuse.conf. fusermount says
 * so, but its message never reaches the terminal (node's stdio is close-on-exec, so libfuse's
 * fusermount child has no stderr): check it here to give the reason instead of "fuse failed".
 */
async function checkAllowOther(): Promise<void> {
  if (process.getuid?.() === 0) return;
  const conf = await readFile('/etc/fuse.conf', 'utf8').catch(() => '');
  if (!/^\s*user_allow_other\s*$/m.test(conf)) {
    throw new Error("--allow-other needs the line 'user_allow_other' in /etc/fuse.conf (ask an administrator), or mount without it");
  }
}

/**
 * The cache folder must be writable (on HPC nodes $HOME may be read-only or absent): say which
 * folder it is and how to choose another, rather than a bare "EACCES: mkdir …".
 */
async function checkCacheDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new Error(`cannot use the cache folder ${dir} (${code}): choose a writable one with --cache-dir DIR, or set XDG_CACHE_HOME`, { cause: err });
  }
}

export async function runMountCommand(argv: string[]): Promise<number> {
  const settings = parseMountArgs(argv);
  if (settings.urlNote) console.error(`xnatfs: ${settings.urlNote}`);
  // Before logging in: a wrong mount point or cache folder is reported without asking for a
  // password first.
  await prepareMountpoint(settings.mountpoint);
  await checkCacheDir(settings.stack.cacheDir);
  if (settings.allowOther) await checkAllowOther();
  const m = await startMount(settings);
  console.error(`xnatfs: mounted ${m.client.baseUrl} at ${m.mountpoint}${settings.stack.readOnly ? ' (read-only)' : ''}; Ctrl-C or \`xnatfs unmount ${m.mountpoint}\` to unmount`);
  stopOnSignals(m);
  return m.done;
}
