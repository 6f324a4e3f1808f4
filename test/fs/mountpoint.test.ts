import { describe, expect, it } from 'vitest';
import { fuseOwner, isXnatfsMount, type MountInfo } from '../../src/fs/mountpoint.js';

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
