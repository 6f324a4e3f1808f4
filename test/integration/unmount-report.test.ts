// What the report at unmount says about uploads still under way when the wait ended: a batch
// job's end, where XNAT may answer a large upload only while xnatfs logs out.
import { afterEach, expect, it } from 'vitest';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { createXnatClient } from '../../src/xnat/client.js';
import { startMount, type RunningMount } from '../../src/cli/mount-command.js';
import { requireFuse, run, tempMountpoint, type TempMountpoint } from '../helpers/fuse.js';

const EXP = 'projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every file below `dir`, recursively (relative paths). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

requireFuse()('the report at unmount', () => {
  let emulator: RunningEmulator | undefined;
  let tmp: DirectoryResult | undefined;
  let mp: TempMountpoint | undefined;
  let mount: RunningMount | undefined;

  afterEach(async () => {
    await mount?.stop().catch(() => undefined);
    await mp?.cleanup();
    await emulator?.close();
    await tmp?.cleanup();
  });

  it('an upload that lands while xnatfs logs out is not reported as failed, and leaves no spool file behind', async () => {
    emulator = await startEmulator({});
    tmp = await tmpDir({ unsafeCleanup: true });
    mp = await tempMountpoint();
    const cacheDir = join(tmp.path, 'cache');
    const client = await createXnatClient({
      baseUrl: emulator.url,
      credentials: { kind: 'password', user: 'demo', password: 'demo', userSource: 'option', passwordSource: 'option' },
    });
    // XNAT takes 1.5 s to answer the upload (storing a large file), and the logout at unmount
    // takes 2.5 s: the answer comes after the wait at unmount (0.3 s), during the logout.
    let uploading = false;
    const upload = client.uploadFile.bind(client);
    client.uploadFile = async (...args) => {
      uploading = true;
      await sleep(1500);
      return upload(...args);
    };
    const close = client.close.bind(client);
    client.close = async () => {
      await sleep(2500);
      return close();
    };
    mount = await startMount(
      {
        url: emulator.url,
        mountpoint: mp.path,
        client: {},
        stack: { cacheDir, cacheBytes: 2 ** 30, listingTtlMs: 600_000, readOnly: false, uploadConcurrency: 4 },
        opTimeoutMs: 60_000,
        uploadWaitMs: 300,
        allowOther: false,
      },
      client,
    );
    const dir = join(mp.path, EXP, 'resources/NOTES/files');
    // An empty file is uploaded at release, after close() returned: no program holds the mount.
    expect((await run('touch', [join(dir, 'done.flag')])).code).toBe(0);
    for (let i = 0; i < 100 && !uploading; i++) await sleep(20);
    expect(uploading).toBe(true);
    const stderr: string[] = [];
    const error = console.error;
    console.error = (...a: unknown[]) => void stderr.push(a.join(' '));
    let code: number;
    try {
      code = await mount.stop();
    } finally {
      console.error = error;
    }
    expect(emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', 'done.flag')).not.toBeNull();
    // XNAT has it: exit 0, nothing listed as lost, and no spool file (with or without its note)
    // for the next mount to call "partly written".
    expect(stderr.join('\n')).not.toMatch(/did not reach XNAT/);
    expect(code).toBe(0);
    expect(await filesUnder(join(cacheDir))).not.toContainEqual(expect.stringMatching(/spool\//));
  });
});
