// Mount point checks and unmounting. Nothing here blocks the main thread: the FUSE handlers of
// a live mount run on it, so a synchronous stat or child process touching a mount deadlocks.
import { execFile } from 'node:child_process';
import { access, readFile, readdir, realpath, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import type { Stats } from 'node:fs';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import createDebug from 'debug';
import { FsError } from './errors.js';

const log = createDebug('xnatfs:fuse');

export interface MountInfo {
  mountId: number;
  parentId: number;
  /** "major:minor" of the device. */
  dev: string;
  root: string;
  mountPoint: string;
  options: string;
  fsType: string;
  source: string;
  /** Per-superblock options (for FUSE: user_id=N,group_id=N of the mounting user). */
  superOptions: string;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
const unescapeOctal = (s: string): string =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Mounts visible to this process, from /proc/self/mountinfo. */
export async function readMountinfo(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [pre, post = ''] = line.split(' - ');
    const f = pre.split(' ');
    const [fsType = '', source = '', superOptions = ''] = post.split(' ');
    mounts.push({
      mountId: Number(f[0]),
      parentId: Number(f[1]),
      dev: f[2] ?? '',
      root: unescapeOctal(f[3] ?? ''),
      mountPoint: unescapeOctal(f[4] ?? ''),
      options: f[5] ?? '',
      fsType,
      source: unescapeOctal(source),
      superOptions,
    });
  }
  return mounts;
}

/**
 * Absolute path as the kernel lists it in mountinfo: the parent is resolved through symlinks,
 * the last component is not, because stat on a stale mount fails with ENOTCONN.
 */
export async function canonicalMountpoint(path: string): Promise<string> {
  const abs = resolve(path);
  if (abs === '/') return abs;
  try {
    return join(await realpath(dirname(abs)), basename(abs));
  } catch {
    return abs;
  }
}

export async function isMounted(path: string): Promise<boolean> {
  const abs = await canonicalMountpoint(path);
  return (await readMountinfo()).some((m) => m.mountPoint === abs);
}

/** The mount on top at `abs` (canonical), or null. Later lines of mountinfo are mounted later. */
export async function mountAt(abs: string): Promise<MountInfo | null> {
  return (await readMountinfo()).filter((m) => m.mountPoint === abs).pop() ?? null;
}

/** The uid that made a FUSE mount (its user_id= option), or null. */
export function fuseOwner(m: MountInfo): number | null {
  const id = /(?:^|,)user_id=(\d+)(?:,|$)/.exec(m.superOptions);
  return id ? Number(id[1]) : null;
}

/**
 * A mount made by xnatfs: subtype "xnatfs" (fstype fuse.xnatfs), or libfuse's fallback for
 * kernels without subtypes, fstype "fuse" with the source "xnatfs#…".
 */
export function isXnatfsMount(m: MountInfo): boolean {
  return m.fsType === 'fuse.xnatfs' || (m.fsType === 'fuse' && m.source.startsWith('xnatfs#'));
}

const PROBE_MS = 5000;

/**
 * Whether the FUSE mount at `abs` has lost its server (the process was killed). stat is no
 * test: the kernel answers it from cached attributes for up to the attr timeout (60 s). Listing
 * the root always asks the server (OPENDIR), and a dead connection answers ENOTCONN at once. A
 * server that does not answer within 5 s counts as alive: it may only be busy.
 */
export async function isDeadFuseMount(abs: string): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const slow = new Promise<'slow'>((r) => (timer = setTimeout(() => r('slow'), PROBE_MS)));
  try {
    const r = await Promise.race([readdir(abs).then(() => 'ok' as const, (err: NodeJS.ErrnoException) => err.code ?? 'error'), slow]);
    log('probe of %s: %s', abs, r);
    return r === 'ENOTCONN' || r === 'ECONNABORTED';
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What is mounted at `path` now, seen by a mount whose root shows `rootMtimeMs`: 'ours' while it
 * is still there; 'gone' when nothing, or another mount, is. After a lazy unmount (fusermount -uz,
 * umount -l) another mount may be made at the same path, and the kernel may give it the same
 * device and mount id; each xnatfs mount shows its own start time on its root. 'stale': a dead
 * FUSE mount is there (ours, if its connection was aborted, or another's); unmounting it harms
 * no one. Async: the process serving the mount answers the stat on its main thread.
 */
export async function whatIsMounted(path: string, rootMtimeMs: number): Promise<'ours' | 'gone' | 'stale'> {
  if (!(await isMounted(path))) return 'gone';
  try {
    return Math.round((await stat(path)).mtimeMs) === Math.round(rootMtimeMs) ? 'ours' : 'gone';
  } catch (err) {
    // Any other failure says nothing either way.
    return (err as NodeJS.ErrnoException).code === 'ENOTCONN' ? 'stale' : 'ours';
  }
}

interface RunResult { ok: boolean; message: string }

function runQuiet(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((done) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      const message = String(stderr).trim() || (err ? err.message : '');
      done({ ok: !err, message });
    });
  });
}

const isRoot = (): boolean => process.getuid?.() === 0;

/** fusermount, or fusermount3 where only libfuse 3's tools are installed. */
async function fusermount(args: string[]): Promise<RunResult> {
  const r = await runQuiet('fusermount', args);
  if (r.ok || !/ENOENT/.test(r.message)) return r;
  return runQuiet('fusermount3', args);
}

/**
 * Unmount whatever is mounted at `mountpoint` with `fusermount -u`. A busy mount (files open,
 * perhaps a copy still writing) is refused with EBUSY unless `lazy`: then `fusermount -uz` and,
 * as root, `umount -l` detach it anyway. Resolves quietly when nothing is mounted there.
 */
export async function unmountPath(mountpoint: string, options: { lazy?: boolean } = {}): Promise<void> {
  const abs = await canonicalMountpoint(mountpoint);
  if (!(await isMounted(abs))) {
    log('unmount %s: nothing mounted', abs);
    return;
  }
  const attempts: Array<[string, string[]]> = [['fusermount', ['-u', abs]]];
  if (options.lazy) {
    attempts.push(['fusermount', ['-uz', abs]]);
    if (isRoot()) attempts.push(['umount', ['-l', abs]]);
  }
  const messages: string[] = [];
  for (const [cmd, args] of attempts) {
    const r = cmd === 'fusermount' ? await fusermount(args) : await runQuiet(cmd, args);
    log('%s %s: %s', cmd, args.join(' '), r.ok ? 'ok' : r.message);
    if (!(await isMounted(abs))) return;
    if (r.message) messages.push(`${cmd} ${args[0]}: ${r.message}`);
  }
  throw new FsError(
    'EBUSY',
    `could not unmount ${abs} (${messages.join('; ')}): ` +
      `close programs using it (see \`fuser -vm ${abs}\`) and retry, or ask an administrator`,
  );
}

/**
 * Make sure `path` can take a new mount: an existing, empty directory that is not already a
 * mount point. A stale mount left by a crashed xnatfs ("Transport endpoint is not connected")
 * is detached first. Errors are FsErrors whose message says what to do.
 */
export async function prepareMountpoint(path: string): Promise<void> {
  const abs = await canonicalMountpoint(path);
  const there = await mountAt(abs);
  if (there?.fsType.startsWith('fuse') && (await isDeadFuseMount(abs))) {
    log('%s is a stale FUSE mount (%s): detaching it', abs, there.fsType);
    await detachStale(abs);
  }
  let st: Stats;
  try {
    st = await stat(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') {
      log('%s is a stale FUSE mount (%s): detaching it', abs, code);
      await detachStale(abs);
      st = await stat(abs);
    } else if (code === 'ENOENT') {
      throw new FsError('ENOENT', `mount point ${abs} does not exist: create it with mkdir -p ${abs}`);
    } else if (code === 'EACCES') {
      throw new FsError('EACCES', `mount point ${abs} is not accessible to you: use a directory you own`);
    } else {
      throw err;
    }
  }
  if (!st.isDirectory()) {
    throw new FsError('ENOTDIR', `mount point ${abs} is not a directory: use an empty directory`);
  }
  const parent = abs === '/' ? st : await stat(dirname(abs));
  if (abs === '/' || parent.dev !== st.dev || (await isMounted(abs))) {
    throw new FsError(
      'EBUSY',
      `mount point ${abs} is already mounted: unmount it first (xnatfs unmount ${abs}) or choose another directory`,
    );
  }
  const entries = await readdir(abs);
  if (entries.length > 0) {
    throw new FsError(
      'ENOTEMPTY',
      `mount point ${abs} is not empty (${entries.length === 1 ? '1 entry' : `${entries.length} entries`} would be hidden): use an empty directory`,
    );
  }
  await checkUserCanMount(abs);
}

const modeOf = (st: Stats): string => `mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${st.uid}`;

/**
 * What keeps an ordinary user from mounting at `abs` that can be told before logging in. Without
 * it a user saw "fuse failed. Usual causes: …" (three guesses; fusermount's own message never
 * reaches the terminal) after the login, and for /dev/fuse a second line from libfuse. access()
 * asks the kernel as this user, so ACLs and groups count as they do for fusermount; root passes.
 */
export async function checkUserCanMount(abs: string, o: { uid?: number; devFuse?: string } = {}): Promise<void> {
  if ((o.uid ?? process.getuid?.()) === 0) return;
  const devFuse = o.devFuse ?? '/dev/fuse';
  try {
    await access(devFuse, constants.R_OK | constants.W_OK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FsError('ENOENT', `${devFuse} does not exist on this machine, so nothing can be mounted with FUSE here: ask an administrator (modprobe fuse; a container needs --device /dev/fuse)`);
    }
    const st = await stat(devFuse).catch(() => null);
    throw new FsError('EACCES', `${devFuse} is not readable and writable by you (${st ? modeOf(st) : (err as NodeJS.ErrnoException).code}), so you cannot mount with FUSE: ask an administrator to allow it (chmod 666 ${devFuse}, as distributions ship it)`);
  }
  try {
    await access(abs, constants.W_OK);
  } catch {
    const st = await stat(abs).catch(() => null);
    throw new FsError('EACCES', `mount point ${abs} is not writable by you (${st ? modeOf(st) : 'no access'}): fusermount mounts only on a directory you may write; use one of your own, e.g. mkdir -p $TMPDIR/xnat`);
  }
}

/**
 * Why fusermount cannot mount for an ordinary user, or null: it is missing from `dirs` (PATH and
 * where libfuse looks), or not setuid root. Asked only after a mount failed: a site may grant it
 * otherwise (file capabilities), so this never refuses a mount by itself.
 */
export async function fusermountProblem(dirs: string[] = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/bin', '/bin']): Promise<string | null> {
  for (const name of ['fusermount', 'fusermount3']) {
    for (const d of dirs.filter(Boolean)) {
      const path = join(d, name);
      const st = await stat(path).catch(() => null);
      if (!st?.isFile()) continue;
      if (st.uid === 0 && (st.mode & 0o4000) !== 0) return null;
      const real = await realpath(path).catch(() => path);
      return `${real} is not setuid root (${modeOf(st)}), so only root can mount with FUSE: ask an administrator (chmod u+s ${real})`;
    }
  }
  return 'fusermount is not installed, so only root can mount with FUSE: ask an administrator (Debian/Ubuntu: apt-get install fuse3; RHEL: dnf install fuse3)';
}

async function detachStale(abs: string): Promise<void> {
  const r = await fusermount(['-uz', abs]);
  if (r.ok) return;
  if (isRoot() && (await runQuiet('umount', ['-l', abs])).ok) return;
  throw new FsError(
    'EBUSY',
    `mount point ${abs} is a stale FUSE mount (transport endpoint is not connected) that could not ` +
      `be cleared (${r.message}): run \`fusermount -uz ${abs}\` as the user who mounted it`,
  );
}
