// `xnatfs unmount MOUNTPOINT`: detach the mount; the mounting process notices, finishes pending
// uploads and exits. Only xnatfs mounts are touched: as root, fusermount -u would unmount anything.
import { stat } from 'node:fs/promises';
import { canonicalMountpoint, fuseOwner, isDeadFuseMount, isXnatfsMount, mountAt, unmountPath } from '../fs/mountpoint.js';
import { UsageError } from './args.js';

export const UNMOUNT_HELP = `Usage: xnatfs unmount MOUNTPOINT

Unmounts an xnatfs mount (also one left stale by a crash). The mounting process waits for
pending uploads, then exits. Other file systems are refused.

Exit status: 0 unmounted; 1 not an xnatfs mount, or it could not be unmounted (busy);
4 nothing is mounted there (a script may treat that as done).
`;

/** Exit status when nothing is mounted at the path. */
export const NOT_MOUNTED = 4;

export async function runUnmountCommand(argv: string[]): Promise<number> {
  if (argv.length !== 1 || argv[0]!.startsWith('-')) throw new UsageError('unmount needs exactly one MOUNTPOINT');
  const abs = await canonicalMountpoint(argv[0]!);
  const m = await mountAt(abs);
  if (!m) {
    const exists = await stat(abs).then(() => true, () => false);
    console.error(`xnatfs: nothing is mounted at ${abs}${exists ? '' : ' (it does not exist)'}: check the path`);
    return NOT_MOUNTED;
  }
  if (!isXnatfsMount(m)) {
    console.error(`xnatfs: ${abs} is a ${m.fsType} mount, not one made by xnatfs: refusing to unmount it (use umount if you mean it)`);
    return 1;
  }
  const owner = fuseOwner(m);
  const me = process.getuid?.();
  if (me !== undefined && me !== 0 && owner !== null && owner !== me) {
    console.error(`xnatfs: ${abs} was mounted by another user (uid ${owner}): only that user or root can unmount it`);
    return 1;
  }
  // A live mount's process finishes its uploads after this; a dead one's cannot, so say where they went.
  const dead = await isDeadFuseMount(abs);
  await unmountPath(abs);
  if (dead) {
    console.error(`xnatfs: the process that mounted ${abs} had died (killed or crashed); its dead mount is cleared. Uploads it had not finished stay in its cache folder: the next read-write mount of the same server with the same --cache-dir resumes them`);
  }
  return 0;
}
