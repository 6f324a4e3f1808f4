// Working folders owned by one process. Two mounts of the same server share a cache folder; each
// keeps its in-flight files (partial downloads, upload spools) in a subfolder of its own, and only
// the folders of processes that are gone are cleaned up or taken over.
//
// The cache folder may be shared by several machines (a home or scratch file system on an HPC
// cluster: the default ~/.cache, or a --cache-dir that outlives the batch job), where a pid means
// nothing: a folder is named `<host>-<pid>-<random>`. A folder of this host belongs to a live
// process if that pid is alive here. Another host's processes cannot be asked: each process
// touches its folders every minute, and another host's folder is taken to be abandoned only once
// it has not been touched for ten minutes. Folders named by a bare pid (older versions) are
// judged by that pid on this host, as before.
import { mkdir, readdir, stat, utimes } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** How often a live process touches its folders. */
export const HEARTBEAT_MS = 60_000;
/** Another host's folder untouched for this long belongs to a process that is gone. */
export const ABANDONED_MS = 10 * 60_000;

const HOST = hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'host';
/** This process's folder name: the same for every mount made by this process. */
const OWN_NAME = `${HOST}-${process.pid}-${randomBytes(4).toString('hex')}`;

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/** The name of this process's subfolder in a shared root. */
export function ownFolderName(): string {
  return OWN_NAME;
}

const heartbeats = new Set<string>();
let heartbeatTimer: NodeJS.Timeout | null = null;

/** Touch `dir` every HEARTBEAT_MS while this process lives, so other hosts see it is in use. */
export function keepAlive(dir: string): void {
  heartbeats.add(dir);
  if (heartbeatTimer) return;
  heartbeatTimer = setInterval(() => {
    for (const d of heartbeats) {
      const now = new Date();
      utimes(d, now, now).catch(() => heartbeats.delete(d)); // gone: cleaned up or taken over
    }
  }, HEARTBEAT_MS);
  heartbeatTimer.unref();
}

/** This process's subfolder of `root`, created 0700 and kept alive. */
export async function ownFolder(root: string): Promise<string> {
  const dir = join(root, OWN_NAME);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  keepAlive(dir);
  return dir;
}

/** Host and pid of a folder name; host null for a bare pid (this host). */
export function parseFolderName(name: string): { host: string | null; pid: number } | null {
  if (/^\d+$/.test(name)) return { host: null, pid: Number(name) };
  const m = /^(.+)-(\d+)-[0-9a-f]+$/.exec(name);
  return m ? { host: m[1]!, pid: Number(m[2]) } : null;
}

/**
 * Subfolders of `root` left by processes that are gone. This process's own folder counts too
 * (an earlier mount in this process has ended: one process mounts one cache folder at a time).
 */
export async function orphanedFolders(root: string, now: number = Date.now()): Promise<string[]> {
  const names = await readdir(root).catch(() => [] as string[]);
  const out: string[] = [];
  for (const n of names) {
    const dir = join(root, n);
    if (n === OWN_NAME) {
      out.push(dir);
      continue;
    }
    const p = parseFolderName(n);
    if (!p || p.pid <= 0) {
      out.push(dir);
    } else if (p.host === null || p.host === HOST) {
      if ((p.host === null && p.pid === process.pid) || !processAlive(p.pid)) out.push(dir);
    } else {
      const st = await stat(dir).catch(() => null);
      if (st && now - st.mtimeMs > ABANDONED_MS) out.push(dir);
    }
  }
  return out;
}
