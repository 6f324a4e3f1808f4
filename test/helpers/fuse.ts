// Helpers for tests that mount real FUSE filesystems.
//
// vitest runs a test file and the mounts it creates in ONE process: the FUSE handlers answer on
// this process's main thread. Anything synchronous that touches a mount (execSync, spawnSync,
// fs.*Sync) blocks that thread while the kernel waits for the handler: a deadlock. Run programs
// against a mount with run() below (async child processes) only.
import { execFile, type ExecFileOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { chmod, rm, rmdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import { dir } from 'tmp-promise';
import { beforeAll, describe } from 'vitest';
import { isMounted, readMountinfo, unmountPath, type MountInfo } from '../../src/fs/mountpoint.js';

export interface FuseAvailability {
  ok: boolean;
  reason: string;
}

function onPath(cmd: string): boolean {
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      // next directory
    }
  }
  return false;
}

let availability: FuseAvailability | undefined;
/**
 * Whether this machine can mount FUSE filesystems: /dev/fuse usable, libfuse.so.2 loadable
 * (through fuse-native's binding), fusermount installed. Synchronous on purpose (it runs at
 * collection time, before anything is mounted).
 */
export function fuseAvailable(): FuseAvailability {
  if (availability) return availability;
  const missing: string[] = [];
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch (err) {
    missing.push(`/dev/fuse is not usable (${(err as NodeJS.ErrnoException).code}; modprobe fuse, or run the container with --device /dev/fuse)`);
  }
  try {
    createRequire(import.meta.url)('fuse-native');
  } catch (err) {
    missing.push(`fuse-native cannot load libfuse.so.2 (${(err as Error).message.split('\n')[0]}; apt-get install libfuse2)`);
  }
  if (!onPath('fusermount') && !onPath('fusermount3')) missing.push('fusermount is not installed (apt-get install fuse3)');
  availability = missing.length ? { ok: false, reason: missing.join('; ') } : { ok: true, reason: 'FUSE available' };
  return availability;
}

export const inCI = (): boolean => process.env.CI === 'true';

type DescribeFn = typeof describe;
type SuiteFactory = () => void;

/**
 * `requireFuse(describe)('suite', () => …)`. Without FUSE: outside CI the suite is skipped with
 * a loud warning; in CI (CI=true) it runs and every test fails with the reason, so a broken CI
 * image cannot pass silently.
 */
export function requireFuse(describeFn: DescribeFn = describe): (name: string, fn: SuiteFactory) => void {
  const { ok, reason } = fuseAvailable();
  if (ok) return (name, fn) => describeFn(name, fn);
  if (!inCI()) {
    return (name, fn) => {
      console.warn(`\n!!! SKIPPING FUSE suite "${name}": ${reason}\n!!! (set CI=true to make this a failure)\n`);
      describeFn.skip(name, fn);
    };
  }
  return (name, fn) =>
    describeFn(name, () => {
      beforeAll(() => {
        throw new Error(`FUSE is required in CI but unavailable: ${reason}`);
      });
      fn();
    });
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Run a program asynchronously and collect its output; never rejects on a non-zero exit.
 * Killed with SIGKILL after `timeout` ms (default 30 s): a process stuck on a FUSE request
 * only dies from SIGKILL.
 */
export function run(cmd: string, args: string[] = [], opts: ExecFileOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: 30_000, killSignal: 'SIGKILL', maxBuffer: 64 << 20, encoding: 'utf8', ...opts },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : e.code === 'ENOENT' ? 127 : null) : 0,
          signal: e?.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr) || (e && typeof e.code === 'string' ? e.message : ''),
        });
      },
    );
  });
}

/** Mounts visible to this process (for "no mount is left behind" assertions). */
export function listMounts(): Promise<MountInfo[]> {
  return readMountinfo();
}

/** FUSE mounts (fuse.*) at or below `under`. */
export async function fuseMountsUnder(under: string): Promise<MountInfo[]> {
  return (await readMountinfo()).filter(
    (m) => m.fsType.startsWith('fuse') && (m.mountPoint === under || m.mountPoint.startsWith(under + '/')),
  );
}

export interface TempMountpoint {
  path: string;
  cleanup(): Promise<void>;
}

/**
 * A fresh empty directory to mount on. cleanup() unmounts first if something is still mounted
 * there, and never removes recursively through a live mount.
 */
export async function tempMountpoint(options: { mode?: number } = {}): Promise<TempMountpoint> {
  const d = await dir({ prefix: 'xnatfs-mnt-' });
  if (options.mode !== undefined) await chmod(d.path, options.mode);
  return {
    path: d.path,
    async cleanup() {
      if (await isMounted(d.path)) await unmountPath(d.path, { lazy: true });
      if (await isMounted(d.path)) throw new Error(`${d.path} is still mounted; not removing it`);
      await rmdir(d.path).catch(() => rm(d.path, { recursive: true, force: true }));
    },
  };
}

/** Run `fn` with a temporary mount point, cleaned up (unmounted, removed) afterwards. */
export async function withTempMountpoint<T>(fn: (mountpoint: string) => Promise<T>): Promise<T> {
  const mp = await tempMountpoint();
  try {
    return await fn(mp.path);
  } finally {
    await mp.cleanup();
  }
}

/** `nobody` where it exists, else a system user created for the purpose. */
export async function testUser(): Promise<{ uid: number; gid: number }> {
  for (const name of ['nobody', 'xnatfs-test']) {
    const [u, g] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
    if (u.code === 0 && g.code === 0) return { uid: Number(u.stdout), gid: Number(g.stdout) };
  }
  const add = await run('useradd', ['--system', '--no-create-home', 'xnatfs-test']);
  if (add.code !== 0) throw new Error(`cannot create a test user: ${add.stderr}`);
  return testUser();
}
