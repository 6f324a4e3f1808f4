// The write path over the real XNAT client and the emulator, where the client's own checks
// (the spool's size against the job's) meet the fs layer's races: writes arriving while an
// upload is under way, and writes the spool's disk cut short.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createStack, type XnatFsStack } from '../../src/fs/stack.js';
import type { XnatApi } from '../../src/xnat/types.js';
import { FsError } from '../../src/fs/errors.js';
import { emulatorWithClients } from '../helpers/emulator-clients.js';

const EXP = '/projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1';
const FILES = `${EXP}/resources/NOTES/files`;

describe('write races against the emulator', () => {
  const suite = emulatorWithClients();
  let cacheDir: string;
  let fs: XnatFsStack | null = null;
  const stored = async (name: string): Promise<string | null> => {
    const p = suite.emu.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', name);
    return p === null ? null : readFile(p, 'utf8');
  };
  const build = (client: XnatApi) => createStack(client, {
    cacheDir, cacheBytes: 1 << 26, listingTtlMs: 60_000, readOnly: false,
    prefetch: { enabled: false }, uploadConcurrency: 2, uploadRetryDelayMs: 20, uploadMaxRetryDelayMs: 40, idleUploadMs: 20,
  });
  beforeEach(async () => {
    cacheDir = await mkdtemp(join(homedir(), '.xnatfs-test-cache-'));
  });
  afterEach(async () => {
    await fs?.shutdown(1000);
    fs = null;
    vi.restoreAllMocks();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('bytes another handle writes while an upload waits for its turn are uploaded, not dropped (fsync while writing)', async () => {
    const client = await suite.client();
    // Uploads wait for a gate, as they would behind other uploads for a slot.
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    let started = false;
    const gated: XnatApi = Object.create(client) as XnatApi;
    gated.uploadFile = async (...a) => {
      started = true;
      await gate;
      return client.uploadFile(...a);
    };
    fs = await build(gated);
    const path = `${FILES}/log.txt`;
    const a = await fs.ops.create!(path, 0o644);
    const b = await fs.ops.open!(path, 1 /* O_WRONLY */);
    await fs.ops.write!(path, a, Buffer.from('first;'), 6, 0);
    const firstFlush = Promise.resolve(fs.ops.flush!(path, a)).then(() => null, (e: unknown) => e);
    while (!started) await new Promise((r) => setTimeout(r, 5));
    await fs.ops.write!(path, b, Buffer.from('second;'), 7, 6);
    openGate();
    await firstFlush;
    await fs.ops.release!(path, a);
    await fs.ops.flush!(path, b);
    await fs.ops.release!(path, b);
    expect(await fs.shutdown(5000)).toEqual([]);
    expect(await stored('log.txt')).toBe('first;second;');
  });

  it('a write the spool disk cut short (disk full) is ENOSPC, and close() uploads the bytes written before it', async () => {
    fs = await build(await suite.client());
    const path = `${FILES}/full.txt`;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('kept;'), 5, 0);
    // The next write gets 3 bytes onto the disk, then the disk is full.
    const probe = await open(join(cacheDir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { write: (...a: unknown[]) => Promise<{ bytesWritten: number; buffer: Buffer }> };
    await probe.close();
    const realWrite = proto.write;
    let calls = 0;
    vi.spyOn(proto, 'write').mockImplementation(function (this: unknown, buf: unknown, off: unknown, _len: unknown, pos: unknown) {
      if (calls++ === 0) return realWrite.call(this, buf, off, 3, pos);
      return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' }));
    });
    const err = await Promise.resolve(fs.ops.write!(path, fd, Buffer.from('lost bytes'), 10, 5)).then(() => null, (e: unknown) => e);
    vi.restoreAllMocks();
    expect(err).toBeInstanceOf(FsError);
    expect((err as FsError).code).toBe('ENOSPC');
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    expect(await stored('full.txt')).toBe('kept;');
  });
});
