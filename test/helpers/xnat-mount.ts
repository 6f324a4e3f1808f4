// An emulator plus a real FUSE mount of it through the full xnatfs stack, in this process.
// Programs run against the mount must go through run() (async child processes): see fuse.ts.
import { dir as tmpDir } from 'tmp-promise';
import { join } from 'node:path';
import { startEmulator, type EmulatorOptions, type RunningEmulator } from '../../src/emulator/index.js';
import { createXnatClient } from '../../src/xnat/client.js';
import { startMount, type RunningMount } from '../../src/cli/mount-command.js';
import type { StackOptions } from '../../src/fs/stack.js';
import { tempMountpoint } from './fuse.js';

export interface XnatMount {
  emulator: RunningEmulator;
  mount: RunningMount;
  /** The mount point. */
  mp: string;
  cacheDir: string;
  /** Unmount, stop the emulator, remove temp dirs. Returns the mount's exit code. */
  close(): Promise<number>;
}

export interface XnatMountOptions {
  emulator?: EmulatorOptions;
  /** Reuse a running emulator (not closed by close()). */
  reuse?: RunningEmulator;
  user?: string;
  password?: string;
  stack?: Partial<StackOptions>;
  opTimeoutMs?: number;
  uploadWaitMs?: number;
}

export async function mountEmulator(o: XnatMountOptions = {}): Promise<XnatMount> {
  const emulator = o.reuse ?? (await startEmulator(o.emulator ?? {}));
  const tmp = await tmpDir({ prefix: 'xnatfs-test-', unsafeCleanup: true });
  const mp = await tempMountpoint();
  const cacheDir = join(tmp.path, 'cache');
  try {
    const client = await createXnatClient({
      baseUrl: emulator.url,
      credentials: { kind: 'password', user: o.user ?? 'demo', password: o.password ?? 'demo', userSource: 'option', passwordSource: 'option' },
    });
    const mount = await startMount(
      {
        url: emulator.url,
        mountpoint: mp.path,
        client: {},
        stack: {
          cacheDir,
          cacheBytes: 2 ** 30,
          listingTtlMs: 600_000,
          readOnly: false,
          uploadConcurrency: 4,
          ...o.stack,
        },
        opTimeoutMs: o.opTimeoutMs ?? 60_000,
        uploadWaitMs: o.uploadWaitMs ?? 20_000,
        allowOther: false,
      },
      client,
    );
    return {
      emulator,
      mount,
      mp: mp.path,
      cacheDir,
      async close() {
        const code = await mount.stop();
        await mp.cleanup();
        if (!o.reuse) await emulator.close();
        await tmp.cleanup();
        return code;
      },
    };
  } catch (err) {
    await mp.cleanup().catch(() => undefined);
    if (!o.reuse) await emulator.close().catch(() => undefined);
    await tmp.cleanup().catch(() => undefined);
    throw err;
  }
}
