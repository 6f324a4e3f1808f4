// Working folders owned by one process. Two mounts of the same server share a cache folder; each
// keeps its in-flight files (partial downloads, upload spools) in a subfolder named by its pid,
// and only the folders of processes that are gone are cleaned up or taken over.
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/** This process's subfolder of `root`, created 0700. */
export async function ownFolder(root: string): Promise<string> {
  const dir = join(root, String(process.pid));
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/**
 * Subfolders of `root` left by processes that are gone. This process's own folder counts too
 * (an earlier mount in this process has ended: one process mounts one cache folder at a time).
 */
export async function orphanedFolders(root: string): Promise<string[]> {
  const names = await readdir(root).catch(() => [] as string[]);
  return names
    .filter((n) => {
      const pid = Number(n);
      return !Number.isInteger(pid) || pid <= 0 || pid === process.pid || !processAlive(pid);
    })
    .map((n) => join(root, n));
}
