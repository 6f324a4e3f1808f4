// The FUSE adapter against the real kernel: a memfs mounted in this process, exercised with
// real programs run as async child processes (see test/helpers/fuse.ts for why never sync).
import { spawn } from 'node:child_process';
import { chown, mkdir, stat, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildHandlers, mountFuse, type FuseMount, type FuseTuning } from '../../src/fs/fuse-adapter.js';
import { FsError } from '../../src/fs/errors.js';
import { isMounted, prepareMountpoint, unmountPath } from '../../src/fs/mountpoint.js';
import type { FsOps, MountOptions, Stat } from '../../src/fs/types.js';
import { fuseMountsUnder, inCI, requireFuse, run, tempMountpoint, type TempMountpoint, testUser } from '../helpers/fuse.js';
import { createMemFs } from '../helpers/memfs.js';
import { repoRoot, transpileForChild, type Transpiled } from '../helpers/transpile.js';

const describeFuse = requireFuse(describe);

const options = (mountpoint: string, extra: Partial<MountOptions & FuseTuning> = {}): MountOptions & FuseTuning => ({
  mountpoint,
  fsname: 'xnatfs-test',
  kernelCache: false,
  attrTimeout: 0,
  entryTimeout: 0,
  bigWrites: true,
  opTimeoutMs: 10_000,
  ...extra,
});

const dirStat = (): Stat => {
  const t = new Date(0);
  return { mode: constants.S_IFDIR | 0o755, size: 4096, nlink: 2, uid: 0, gid: 0, mtime: t, atime: t, ctime: t };
};

describe('buildHandlers', () => {
  it('registers only the ops that are defined', () => {
    const ro = buildHandlers(createMemFs({}, { readOnly: true }));
    expect(Object.keys(ro).sort()).toEqual(['getattr', 'open', 'read', 'readdir']);
    expect(Object.keys(buildHandlers(createMemFs()))).toContain('write');
  });

  it('answers a plain value within the call, a promise once it settles, a rejection as an errno', async () => {
    const stat: Stat = { mode: 0o100644, size: 3, nlink: 1, uid: 0, gid: 0, mtime: new Date(0), atime: new Date(0), ctime: new Date(0) };
    const h = buildHandlers({
      getattr: () => stat,
      open: async () => 7,
      read: (_p, fd) => (fd === 7 ? 3 : Promise.reject(new FsError('EBADF', 'no such handle'))),
    });
    const calls: unknown[][] = [];
    const cb = (...args: unknown[]): void => void calls.push(args);
    h.getattr!('/f', cb);
    expect(calls).toHaveLength(1); // already answered, no microtask
    expect(calls[0]).toMatchObject([0, { size: 3, mode: 0o100644 }]);
    h.open!('/f', 0, cb);
    expect(calls).toHaveLength(1);
    await new Promise((r) => setImmediate(r));
    expect(calls[1]).toEqual([0, 7]);
    h.read!('/f', 7, Buffer.alloc(3), 3, 0, cb);
    expect(calls[2]).toEqual([3]);
    h.read!('/f', 8, Buffer.alloc(3), 3, 0, cb);
    await new Promise((r) => setImmediate(r));
    expect(calls[3]).toEqual([-9]); // EBADF
  });
});

describeFuse('fuse adapter (real mounts)', () => {
  let mp: TempMountpoint;
  let mount: FuseMount | undefined;
  let child: Transpiled | undefined;

  beforeAll(async () => {
    child = await transpileForChild(join(repoRoot, 'test/helpers/mount-child.ts'));
  });
  afterAll(async () => {
    await child?.cleanup();
  });
  beforeEach(async () => {
    mp = await tempMountpoint();
  });
  afterEach(async () => {
    await mount?.unmount();
    mount = undefined;
    await mp.cleanup();
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  it('serves getattr, readdir and read to ls, stat and cat', async () => {
    const fs = createMemFs({ '/hello.txt': 'hello world\n', '/dir/a.bin': Buffer.alloc(1000, 7) });
    mount = await mountFuse(fs, options(mp.path));
    const entry = (await fuseMountsUnder(mp.path))[0];
    expect(entry).toMatchObject({ fsType: 'fuse.xnatfs', source: 'xnatfs-test' });

    const ls = await run('ls', ['-l', mp.path]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/-rw-r--r-- .* 12 .* hello\.txt/);
    expect(ls.stdout).toMatch(/drwxr-xr-x .* dir/);
    expect((await run('cat', [join(mp.path, 'hello.txt')])).stdout).toBe('hello world\n');
    expect((await run('stat', ['-c', '%s %F', join(mp.path, 'dir/a.bin')])).stdout.trim()).toBe('1000 regular file');
  });

  it('maps FsError to its errno and anything else to EIO, logged once', async () => {
    const errorSpy = vi.spyOn(console, 'error').mockImplementation(() => {});
    const ops: FsOps = {
      getattr(path) {
        if (path === '/') return Promise.resolve(dirStat());
        if (path === '/denied') return Promise.reject(new FsError('EACCES', 'no access to /denied'));
        if (path === '/broken') return Promise.reject(new Error('boom'));
        if (path === '/sync-throw') throw new TypeError('sync boom');
        return Promise.reject(new FsError('ENOENT', `${path} not found`));
      },
    };
    mount = await mountFuse(ops, options(mp.path));
    const ls = (name: string) => run('ls', ['-l', join(mp.path, name)]);
    expect((await ls('missing')).stderr).toMatch(/No such file or directory/);
    expect((await ls('denied')).stderr).toMatch(/Permission denied/);
    expect((await ls('broken')).stderr).toMatch(/Input\/output error/);
    expect((await ls('broken')).stderr).toMatch(/Input\/output error/);
    expect((await ls('sync-throw')).stderr).toMatch(/Input\/output error/);
    const lines = errorSpy.mock.calls.map((c) => String(c[0]));
    expect(lines.filter((l) => l.includes('/broken: boom'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('sync boom'))).toHaveLength(1);
    errorSpy.mockRestore();
  });

  it('gets big writes from the kernel (dd bs=1M)', async () => {
    const fs = createMemFs();
    mount = await mountFuse(fs, options(mp.path, { bigWrites: true }));
    const dd = await run('dd', ['if=/dev/zero', `of=${join(mp.path, 'f')}`, 'bs=1M', 'count=4']);
    expect(dd.code, dd.stderr).toBe(0);
    expect(fs.sizeOf('/f')).toBe(4 << 20);
    console.info(`max write with bigWrites: ${fs.counters.maxWriteLen} bytes`);
    expect(fs.counters.maxWriteLen).toBeGreaterThanOrEqual(128 * 1024);
    const cat = await run('sh', ['-c', `cat "$1" | wc -c`, 'sh', join(mp.path, 'f')]);
    expect(cat.stdout.trim()).toBe(String(4 << 20));
    console.info(`max read: ${fs.counters.maxReadLen} bytes`);
  });

  it('gets 4 KiB writes without bigWrites (what the patch is for)', async () => {
    const fs = createMemFs();
    mount = await mountFuse(fs, options(mp.path, { bigWrites: false }));
    const dd = await run('dd', ['if=/dev/zero', `of=${join(mp.path, 'f')}`, 'bs=1M', 'count=1']);
    expect(dd.code, dd.stderr).toBe(0);
    console.info(`max write without bigWrites: ${fs.counters.maxWriteLen} bytes`);
    expect(fs.counters.maxWriteLen).toBeLessThan(128 * 1024);
  });

  it('leaves ops that are not defined to libfuse (read-only memfs: writes fail)', async () => {
    mount = await mountFuse(createMemFs({ '/a': 'a' }, { readOnly: true }), options(mp.path));
    const dd = await run('dd', ['if=/dev/zero', `of=${join(mp.path, 'new')}`, 'bs=4k', 'count=1']);
    expect(dd.code).not.toBe(0);
    expect(dd.stderr).toMatch(/Function not implemented/);
  });

  it('readOnly mounts ro: the kernel answers EROFS without calling the write ops', async () => {
    const fs = createMemFs({ '/a': 'a' });
    mount = await mountFuse(fs, options(mp.path, { readOnly: true }));
    const dd = await run('dd', ['if=/dev/zero', `of=${join(mp.path, 'new')}`, 'bs=4k', 'count=1']);
    expect(dd.stderr).toMatch(/Read-only file system/);
    const rm = await run('rm', ['-f', join(mp.path, 'a')]);
    expect(rm.stderr).toMatch(/Read-only file system/);
    expect((await run('cat', [join(mp.path, 'a')])).stdout).toBe('a');
    for (const op of ['create', 'write', 'unlink', 'truncate']) expect(fs.counters.calls.get(op) ?? 0, op).toBe(0);
  });

  it('answers ETIMEDOUT when a handler is slower than opTimeoutMs', async () => {
    let pending: Promise<unknown> = Promise.resolve();
    const ops: FsOps = {
      async getattr(path) {
        if (path === '/slow') {
          pending = new Promise((r) => setTimeout(r, 1500));
          await pending;
        }
        return dirStat();
      },
    };
    mount = await mountFuse(ops, options(mp.path, { opTimeoutMs: 300 }));
    const started = Date.now();
    const st = await run('stat', [join(mp.path, 'slow')]);
    expect(st.stderr).toMatch(/Connection timed out/);
    expect(Date.now() - started).toBeLessThan(1400);
    await pending; // the late answer is ignored by fuse-native
  });

  it('runs ops.init before resolving, and unmounts again when init fails', async () => {
    const order: string[] = [];
    const fs = createMemFs({ '/a': 'a' });
    fs.init = async () => {
      await new Promise((r) => setTimeout(r, 100));
      order.push('init');
    };
    mount = await mountFuse(fs, options(mp.path));
    order.push('mounted');
    expect(order).toEqual(['init', 'mounted']);
    await mount.unmount();
    mount = undefined;

    const failing = createMemFs();
    failing.init = () => Promise.reject(new FsError('EIO', 'cannot log in to XNAT'));
    await expect(mountFuse(failing, options(mp.path))).rejects.toThrow(/cannot log in/);
    expect(await isMounted(mp.path)).toBe(false);
  });

  it('unmount() is idempotent and works after the mount was lazily detached', async () => {
    mount = await mountFuse(createMemFs({ '/a': 'a' }), options(mp.path));
    expect((await run('fusermount', ['-uz', mp.path])).code).toBe(0);
    expect(await isMounted(mp.path)).toBe(false);
    await mount.unmount();
    await mount.unmount();
  });

  it('unmountPath() unmounts, and is quiet when nothing is mounted', async () => {
    mount = await mountFuse(createMemFs({ '/a': 'a' }), options(mp.path));
    await unmountPath(mp.path);
    expect(await isMounted(mp.path)).toBe(false);
    await unmountPath(mp.path);
    await mount.unmount();
  });

  it('clears the stale mount a crashed xnatfs leaves behind', async () => {
    const proc = spawn(process.execPath, [child!.entry, 'hold', mp.path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(proc.stdout, 'data')) as [Buffer];
    expect(line.toString()).toContain('MOUNTED');
    proc.kill('SIGKILL');
    await once(proc, 'exit');

    const st = await run('stat', [mp.path]);
    expect(st.stderr).toMatch(/Transport endpoint is not connected/);
    await prepareMountpoint(mp.path);
    expect(await isMounted(mp.path)).toBe(false);

    mount = await mountFuse(createMemFs({ '/again.txt': 'x' }), options(mp.path));
    expect((await run('ls', [mp.path])).stdout.trim()).toBe('again.txt');
  });

  it('clears a crashed mount at once although the kernel still answers stat from its cache', async () => {
    // As `xnatfs mount` does: attributes cached for 60 s, so stat of the root never reaches the
    // (dead) server until they expire.
    const proc = spawn(process.execPath, [child!.entry, 'hold', mp.path, '60'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(proc.stdout, 'data')) as [Buffer];
    expect(line.toString()).toContain('MOUNTED');
    expect((await run('stat', [mp.path])).code).toBe(0); // caches the root's attributes
    proc.kill('SIGKILL');
    await once(proc, 'exit');
    expect((await run('ls', [mp.path])).stderr).toMatch(/Transport endpoint is not connected/);

    await prepareMountpoint(mp.path);
    expect(await isMounted(mp.path)).toBe(false);
  });

  it('refuses a live mount even when it answers slowly', async () => {
    const fs = createMemFs({ '/a': 'a' });
    const readdir = fs.readdir!.bind(fs);
    fs.readdir = async (path) => {
      await new Promise((r) => setTimeout(r, 300));
      return readdir(path);
    };
    mount = await mountFuse(fs, options(mp.path));
    await expect(prepareMountpoint(mp.path)).rejects.toThrow(/already mounted/);
    expect(await isMounted(mp.path)).toBe(true);
    await mount.unmount();
    mount = undefined;
  });

  it('explains unusable mount points', async () => {
    const missing = join(mp.path, 'nope');
    await expect(prepareMountpoint(missing)).rejects.toThrow(
      `mount point ${missing} does not exist: create it with mkdir -p ${missing}`,
    );
    await expect(mountFuse(createMemFs(), options(missing))).rejects.toThrow(/does not exist/);

    const file = join(mp.path, 'file');
    await writeFile(file, 'x');
    await expect(prepareMountpoint(file)).rejects.toThrow(/is not a directory/);
    await expect(prepareMountpoint(mp.path)).rejects.toThrow(`mount point ${mp.path} is not empty (1 entry would be hidden)`);

    const sub = join(mp.path, 'sub');
    await mkdir(sub);
    mount = await mountFuse(createMemFs(), options(sub));
    await expect(prepareMountpoint(sub)).rejects.toThrow(/already mounted/);
    await expect(mountFuse(createMemFs(), options(sub))).rejects.toThrow(/already mounted/);
    await mount.unmount();
    mount = undefined;
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });
});

// fusermount is setuid root so that ordinary users can mount; prove it works through our
// adapter by running a child as an unprivileged user. Needs root to switch users.
const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  console.warn(`\n!!! SKIPPING unprivileged-mount test: needs root to switch to a test user${inCI() ? ' (in CI too)' : ''}\n`);
}
describeFuse('fuse adapter as an unprivileged user', () => {
  it.skipIf(!isRoot)('mounts, lists and unmounts via setuid fusermount', async () => {
    // libfuse 2 opens /dev/fuse itself before it falls back to fusermount: ordinary users need
    // it world read-write, as udev sets it up on desktops; minimal containers have 0600.
    const mode = (await stat('/dev/fuse')).mode & 0o777;
    if ((mode & 0o006) !== 0o006) {
      const reason = `/dev/fuse is mode ${mode.toString(8)}: ordinary users cannot mount (chmod 0666 /dev/fuse, as udev and .ci/run do)`;
      if (inCI()) throw new Error(reason);
      console.warn(`\n!!! SKIPPING unprivileged-mount test: ${reason}\n`);
      return;
    }
    const user = await testUser();
    const child = await transpileForChild(join(repoRoot, 'test/helpers/mount-child.ts'));
    const base = await tempMountpoint({ mode: 0o755 });
    const mnt = join(base.path, 'mnt');
    try {
      await mkdir(mnt);
      await chown(mnt, user.uid, user.gid);
      const r = await run(
        'setpriv',
        [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', process.execPath, child.entry, 'list', mnt],
        { env: { PATH: process.env.PATH, HOME: '/', DEBUG: process.env.DEBUG }, cwd: '/', timeout: 60_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, string>;
      expect(out.error).toBeUndefined();
      expect(out.uid).toBe(user.uid);
      expect(out.ls).toContain('hello.txt');
      expect(out.cat).toBe('hello from memfs\n');
      expect(await fuseMountsUnder(base.path)).toEqual([]);
    } finally {
      await unmountPath(mnt);
      await run('rmdir', [mnt]);
      await base.cleanup();
      await child.cleanup();
    }
  });
});
