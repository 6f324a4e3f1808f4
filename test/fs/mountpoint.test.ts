import { describe, expect, it } from 'vitest';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir } from 'tmp-promise';
import { checkUserCanMount, fuseOwner, fusermountProblem, isXnatfsMount, type MountInfo } from '../../src/fs/mountpoint.js';

const mount = (fsType: string, source: string, superOptions: string): MountInfo => ({
  mountId: 1, parentId: 0, dev: '0:50', root: '/', mountPoint: '/tmp/x', options: 'rw,nosuid,nodev', fsType, source, superOptions,
});

describe('mountinfo of FUSE mounts', () => {
  it("tells who made a FUSE mount (xnatfs unmount names them instead of fusermount's mtab message)", () => {
    expect(fuseOwner(mount('fuse.xnatfs', 'xnatfs#https://x', 'rw,user_id=1000,group_id=1000'))).toBe(1000);
    expect(fuseOwner(mount('fuse.xnatfs', 'xnatfs#https://x', 'rw,user_id=0,group_id=0,allow_other'))).toBe(0);
    expect(fuseOwner(mount('tmpfs', 'tmpfs', 'rw,size=1024k'))).toBeNull();
  });
  it('recognises xnatfs mounts, also under fstype fuse', () => {
    expect(isXnatfsMount(mount('fuse.xnatfs', 'xnatfs#https://x', ''))).toBe(true);
    expect(isXnatfsMount(mount('fuse', 'xnatfs#https://x', ''))).toBe(true);
    expect(isXnatfsMount(mount('fuse.sshfs', 'me@host:', ''))).toBe(false);
  });
});

// A new user on a cluster node: the reason a mount cannot be made, in one line saying what to do,
// instead of "fuse failed. Usual causes: …" (three guesses) after the login.
describe('why an ordinary user cannot mount', () => {
  it('no /dev/fuse: says FUSE is not available on this machine', async () => {
    const d = await tmpDir({ unsafeCleanup: true });
    try {
      await expect(checkUserCanMount(d.path, { uid: 1000, devFuse: join(d.path, 'fuse') })).rejects.toThrow(
        `${join(d.path, 'fuse')} does not exist on this machine, so nothing can be mounted with FUSE here: ask an administrator`,
      );
      // root needs none of it
      await expect(checkUserCanMount(d.path, { uid: 0, devFuse: join(d.path, 'fuse') })).resolves.toBeUndefined();
    } finally {
      await d.cleanup();
    }
  });

  it('a fusermount that is not setuid root, or none: names it and what to ask for', async () => {
    const d = await tmpDir({ unsafeCleanup: true });
    try {
      expect(await fusermountProblem([d.path])).toMatch(/^fusermount is not installed, so only root can mount with FUSE: ask an administrator/);
      const fm = join(d.path, 'fusermount');
      await writeFile(fm, '#!/bin/sh\n');
      await chmod(fm, 0o755);
      expect(await fusermountProblem([d.path])).toBe(`${fm} is not setuid root (mode 0755, owner uid ${process.getuid?.()}), so only root can mount with FUSE: ask an administrator (chmod u+s ${fm})`);
    } finally {
      await d.cleanup();
    }
  });
});
