// The fs layer driven directly (no FUSE): reads, errnos, and the write path against an in-memory XNAT.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { constants } from 'node:fs';
import { mkdtemp, readdir, readFile as readFileFs, readlink, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createStack, type StackOptions, type XnatFsStack } from '../../src/fs/stack.js';
import { XnatError, type Owner } from '../../src/xnat/types.js';
import { MemoryXnat, sampleArchive } from '../helpers/memory-client.js';
import { FsError } from '../../src/fs/errors.js';
import { buildHandlers } from '../../src/fs/fuse-adapter.js';

const E = '/projects/P1/subjects/S1/experiments/E1';
const NOTES = `${E}/resources/NOTES/files`;
const expOwner: Owner = { level: 'experiment', project: 'P1', experiment: 'XNAT_E00001' };

async function errno(p: unknown): Promise<string> {
  const e = await Promise.resolve(p).then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(FsError);
  return (e as FsError).code;
}

describe('fs operations over an in-memory XNAT', () => {
  let tmp: DirectoryResult;
  let x: MemoryXnat;
  let fs: XnatFsStack;
  let cacheDir: string;
  const build = async (readOnly = false, extra: Partial<StackOptions> = {}) => createStack(x, {
    cacheDir, cacheBytes: 1 << 26, listingTtlMs: 60_000, readOnly,
    prefetch: { enabled: false, concurrency: 2, maxFileBytes: 1 << 20, maxFolderBytes: 1 << 24 },
    uploadConcurrency: 2, uploadRetryDelayMs: 20, uploadMaxRetryDelayMs: 40, idleUploadMs: 20,
    ...extra,
  });
  beforeEach(async () => {
    tmp = await tmpDir({ unsafeCleanup: true });
    // Outside the system temp dir, like the default ~/.cache/xnatfs (tmp rejects some paths there).
    cacheDir = await mkdtemp(join(homedir(), '.xnatfs-test-cache-'));
    x = sampleArchive();
    fs = await build();
  });
  afterEach(async () => {
    await fs.shutdown(1000);
    await tmp.cleanup();
    await rm(cacheDir, { recursive: true, force: true });
  });

  async function writeFile(path: string, data: Buffer): Promise<void> {
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, data, data.length, 0);
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
  }

  /** A new file in RESULTS whose upload XNAT refuses (503): its flush fails, it stays spooled. */
  async function writeRefused(name: string, text: string): Promise<string> {
    await fs.ops.mkdir!(`${E}/resources/RESULTS`, 0o755);
    x.uploadFile = async () => { throw new XnatError('server', 'HTTP 503', 503); };
    const path = `${E}/resources/RESULTS/files/${name}`;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from(text), text.length, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EIO');
    await fs.ops.release!(path, fd);
    return path;
  }

  /** The first 64 bytes (or fewer) read through handle `fd`, as text. */
  async function readHead(path: string, fd: number): Promise<string> {
    const buf = Buffer.alloc(64);
    const n = await fs.ops.read!(path, fd, buf, 64, 0);
    return buf.subarray(0, n).toString();
  }

  async function readFile(path: string): Promise<Buffer> {
    const st = await fs.ops.getattr!(path);
    const fd = await fs.ops.open!(path, constants.O_RDONLY);
    const buf = Buffer.alloc(st.size + 10);
    const n = await fs.ops.read!(path, fd, buf, buf.length, 0);
    await fs.ops.release!(path, fd);
    return buf.subarray(0, n);
  }

  it('stats and reads files with the listed size', async () => {
    const st = await fs.ops.getattr!(`${E}/scans/4-Ax_3D_T1/resources/DICOM/files/0003.dcm`);
    expect(st.size).toBe(1003);
    expect(st.mode & constants.S_IFREG).toBeTruthy();
    expect(await readFile(`${NOTES}/sub dir/a#b.txt`)).toEqual(Buffer.from('hello'));
    expect((await fs.ops.readdir!(NOTES)).names).toEqual(['.', '..', 'sub dir']);
  });

  it('answers from memory without a promise: getattr of a resolved path, open, read, flush and release of a file in memory', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    expect(await readFile(path)).toEqual(Buffer.from('hello')); // listed and fetched
    await fs.content.idle(); // and kept in memory
    const st = fs.ops.getattr!(path);
    expect(st).not.toBeInstanceOf(Promise);
    expect((st as { size: number }).size).toBe(5);
    const fd = fs.ops.open!(path, constants.O_RDONLY);
    expect(typeof fd).toBe('number');
    const buf = Buffer.alloc(16);
    expect(fs.ops.read!(path, fd as number, buf, 16, 0)).toBe(5);
    expect(buf.subarray(0, 5).toString()).toBe('hello');
    expect(fs.ops.flush!(path, fd as number)).toBeUndefined();
    expect(fs.ops.release!(path, fd as number)).toBeUndefined();
    // Failures stay promises, even when known at once.
    const dir = fs.ops.open!(NOTES, constants.O_RDONLY);
    expect(dir).toBeInstanceOf(Promise);
    expect(await errno(dir)).toBe('EISDIR');
  });

  it('readdir gives every entry its type and size, so find and ls need no stat apiece', async () => {
    const dir = `${E}/scans/4-Ax_3D_T1/resources/DICOM/files`;
    const { names, stats } = await fs.ops.readdir!(dir);
    expect(stats).toHaveLength(names.length);
    const i = names.indexOf('0003.dcm');
    expect(stats![i]!.size).toBe(1003);
    expect(stats![i]!.mode & constants.S_IFREG).toBeTruthy();
    expect(stats![names.indexOf('.')]!.mode & constants.S_IFDIR).toBeTruthy();
    await fs.ops.mkdir!(`${NOTES}/newdir`, 0o755);
    const withLocal = await fs.ops.readdir!(NOTES);
    expect(withLocal.names).toEqual(['.', '..', 'sub dir', 'newdir']);
    expect(withLocal.stats!.every((s) => (s.mode & constants.S_IFDIR) !== 0)).toBe(true);
  });

  it('answers ENOENT, EISDIR and EACCES precisely', async () => {
    expect(await errno(fs.ops.getattr!('/projects/NOPE'))).toBe('ENOENT');
    expect(await errno(fs.ops.open!(NOTES, constants.O_RDONLY))).toBe('EISDIR');
    expect(await errno(fs.ops.mkdir!('/projects/P1/subjects/S2', 0o755))).toBe('EACCES');
    expect(await errno(fs.ops.create!(`${E}/new.txt`, 0o644))).toBe('EACCES');
    expect(await errno(fs.ops.getattr!(`${NOTES}/sub dir/a#b.txt/below`))).toBe('ENOTDIR');
    expect(await errno(fs.ops.readdir!(`${NOTES}/sub dir/a#b.txt`))).toBe('ENOTDIR');
  });

  it('maps what XNAT answers a listing to errnos: 403 → EACCES, 500 → EIO', async () => {
    x.listSubjects = async () => { throw new XnatError('forbidden', 'Unable to read subjects', 403); };
    x.listScans = async () => { throw new XnatError('server', 'Internal Server Error', 500); };
    const denied = await Promise.resolve(fs.ops.getattr!('/projects/P1/subjects/S1')).catch((e: unknown) => e as FsError);
    expect(denied).toMatchObject({ code: 'EACCES' });
    expect((denied as FsError).message).toMatch(/^\/projects\/P1\/subjects\/S1: XNAT denies access \(403\); ask the project owner/);
    expect(await errno(fs.ops.readdir!('/projects/P1/experiments/E1/scans'))).toBe('EIO');
  });

  it('a read-only stack offers only the read side (mounted ro, the kernel answers EROFS)', async () => {
    await fs.shutdown(100);
    fs = await build(true);
    expect(Object.keys(fs.ops).sort()).toEqual(['getattr', 'open', 'read', 'readdir', 'release', 'statfs']);
    expect(await errno(fs.ops.open!(`${NOTES}/sub dir/a#b.txt`, constants.O_WRONLY))).toBe('EROFS');
    expect((await fs.ops.getattr!(NOTES)).mode & 0o222).toBe(0);
    expect((await readFile(`${NOTES}/sub dir/a#b.txt`)).toString()).toBe('hello');
  });

  it('both kinds of mount register statfs (df on a read-write mount showed a disk of size 0)', async () => {
    const rw = buildHandlers(fs.ops);
    expect(Object.keys(rw)).toEqual(expect.arrayContaining(['statfs', 'getattr', 'write', 'create', 'utimens']));
    expect((await fs.ops.statfs!('/')).blocks).toBeGreaterThan(0);
    await fs.shutdown(100);
    fs = await build(true);
    expect(Object.keys(buildHandlers(fs.ops)).sort()).toEqual(['getattr', 'open', 'read', 'readdir', 'release', 'statfs']);
  });

  it('mkdir in resources/ creates a resource; an existing one is EEXIST', async () => {
    await fs.ops.mkdir!(`${E}/resources/RESULTS`, 0o755);
    expect(x.calls).toContain('mkres RESULTS');
    expect((await fs.ops.readdir!(`${E}/resources`)).names).toContain('RESULTS');
    expect(await errno(fs.ops.mkdir!(`${E}/resources/RESULTS`, 0o755))).toBe('EEXIST');
  });

  it('uploads on flush, shows the new file at once and drops the spool', async () => {
    await fs.ops.mkdir!(`${E}/resources/RESULTS`, 0o755);
    await fs.ops.mkdir!(`${E}/resources/RESULTS/files/sub`, 0o755);
    expect((await fs.ops.getattr!(`${E}/resources/RESULTS/files/sub`)).mode & constants.S_IFDIR).toBeTruthy();
    const data = Buffer.from('result bytes');
    await writeFile(`${E}/resources/RESULTS/files/sub/out.nii`, data);
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual(['upload sub/out.nii']);
    expect(await readFile(`${E}/resources/RESULTS/files/sub/out.nii`)).toEqual(data);
    expect((await fs.ops.getattr!(`${E}/resources/RESULTS/files/sub/out.nii`)).size).toBe(data.length);
    expect(fs.overlay.files.size).toBe(0);
    expect(await readdir(fs.spoolDir)).toEqual([]);
  });

  it('replaces an existing file when truncated to 0 and rewritten (cp over a file)', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    await fs.ops.truncate!(path, 0);
    const fd = await fs.ops.open!(path, constants.O_WRONLY);
    await fs.ops.write!(path, fd, Buffer.from('new!'), 4, 0);
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    expect(await readFile(path)).toEqual(Buffer.from('new!'));
    expect(x.calls.filter((c) => c.startsWith('get'))).toEqual(['get sub dir/a#b.txt']);
  });

  it('reads back what it wrote over a file of the same size on a server that lists no digests', async () => {
    x.digests = false;
    const path = `${NOTES}/sub dir/a#b.txt`; // "hello"
    expect(await readFile(path)).toEqual(Buffer.from('hello'));
    await fs.ops.truncate!(path, 0);
    const fd = await fs.ops.open!(path, constants.O_WRONLY);
    await fs.ops.write!(path, fd, Buffer.from('HELLO'), 5, 0);
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    // Same URI, size and (empty) digest: only our own write says the cached bytes are old.
    expect(await readFile(path)).toEqual(Buffer.from('HELLO'));
    // …also for a mount started later on the same cache.
    await fs.shutdown(1000);
    fs = await build();
    expect(await readFile(path)).toEqual(Buffer.from('HELLO'));
  });

  it('reads back a file deleted and written again with as many bytes on a server that lists no digests', async () => {
    x.digests = false;
    const path = `${NOTES}/sub dir/a#b.txt`; // "hello"; a name listed again after an upload
    expect(await readFile(path)).toEqual(Buffer.from('hello'));
    await fs.content.idle();
    await fs.ops.unlink!(path);
    await writeFile(path, Buffer.from('HELLO'));
    expect(await readFile(path)).toEqual(Buffer.from('HELLO'));
    // Moved away (its old name deleted on XNAT), then written again.
    await fs.content.idle();
    await fs.ops.rename!(path, `${NOTES}/sub dir/moved.txt`);
    await writeFile(path, Buffer.from('hello'));
    expect(await readFile(path)).toEqual(Buffer.from('hello'));
  });

  it('reads back its second upload of a file, not bytes cached from its first one in an earlier mount', async () => {
    // XNAT lists digests here; only the entry put into the cached listing after an upload has none.
    const dir = `${E}/resources/NOTES/files`;
    await fs.ops.readdir!(dir);
    await writeFile(`${dir}/result.txt`, Buffer.from('first'));
    expect(await readFile(`${dir}/result.txt`)).toEqual(Buffer.from('first'));
    await fs.content.idle();
    // The next mount lists it with its digest, and this one replaces it with as many bytes.
    await fs.shutdown(1000);
    fs = await build();
    await fs.ops.readdir!(dir);
    await writeFile(`${dir}/result.txt`, Buffer.from('again'));
    expect(await readFile(`${dir}/result.txt`)).toEqual(Buffer.from('again'));
  });

  it('copying files in costs their PUTs only: each is put into the cached listing, not listed again', async () => {
    const scanFiles = `${E}/scans/4-Ax_3D_T1/resources/DICOM/files`;
    for (const dir of [`${E}/resources/NOTES/files`, scanFiles]) {
      await fs.ops.readdir!(dir);
      x.calls = [];
      const names = ['out-1.nii', 'sub/out-2.nii', 'out-3.nii'];
      await fs.ops.mkdir!(`${dir}/sub`, 0o755); // as cp -r does
      for (const [i, name] of names.entries()) await writeFile(`${dir}/${name}`, Buffer.alloc(100 + i, i));
      expect(x.calls.filter((c) => !c.startsWith('upload'))).toEqual([]);
      expect((await fs.ops.readdir!(dir)).names).toEqual(expect.arrayContaining(['out-1.nii', 'sub', 'out-3.nii']));
      expect((await fs.ops.getattr!(`${dir}/sub/out-2.nii`)).size).toBe(101);
      expect(await readFile(`${dir}/out-3.nii`)).toEqual(Buffer.alloc(102, 2));
      // Replaced by a shorter copy: the listing shows the new size.
      await writeFile(`${dir}/out-1.nii`, Buffer.from('short'));
      expect((await fs.ops.getattr!(`${dir}/out-1.nii`)).size).toBe(5);
      expect(await readFile(`${dir}/out-1.nii`)).toEqual(Buffer.from('short'));
      expect(x.calls.filter((c) => c.startsWith('files') || c.startsWith('scanfiles'))).toEqual([]);
    }
  });

  it('lists the resource again after uploading a name that old XNAT may store differently', async () => {
    const dir = `${E}/resources/NOTES/files`;
    await fs.ops.readdir!(dir);
    x.calls = [];
    await writeFile(`${dir}/with space.txt`, Buffer.from('x'));
    expect((await fs.ops.getattr!(`${dir}/with space.txt`)).size).toBe(1);
    expect(x.calls.filter((c) => c.startsWith('files'))).toHaveLength(1);
  });

  it('a clean shutdown leaves no empty working folders of its own behind', async () => {
    await writeFile(`${NOTES}/done.txt`, Buffer.from('done'));
    expect(await readFile(`${NOTES}/sub dir/a#b.txt`)).toEqual(Buffer.from('hello'));
    await fs.shutdown(1000);
    await expect(stat(fs.spoolDir)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readdir(join(cacheDir, 'partial'))).toEqual([]);
    fs = await build(); // for afterEach
  });

  it('a close whose version another handle cut short meanwhile (cp over it again) succeeds; the later close uploads what is there', async () => {
    const path = `${NOTES}/twice.txt`;
    const orig = x.uploadFile.bind(x);
    let go: (() => void) | null = null;
    x.uploadFile = async (o, r, p, options) => {
      if (!go) await new Promise<void>((res) => (go = res)); // the first upload waits for the second writer
      // As the HTTP client does: a spool shorter than the size to send is refused.
      if ('sourcePath' in options && (await stat(options.sourcePath)).size < options.size!) throw new Error(`local file ${options.sourcePath} was truncated meanwhile`);
      return orig(o, r, p, options);
    };
    const fd1 = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd1, Buffer.alloc(1000, 1), 1000, 0);
    const first = Promise.resolve(fs.ops.flush!(path, fd1)).then(() => 'ok', (e: FsError) => e.code);
    while (!go) await new Promise((r) => setTimeout(r, 2));
    // A second cp of the same name: truncate to 0, then write its bytes.
    await fs.ops.truncate!(path, 0);
    const fd2 = await fs.ops.open!(path, constants.O_WRONLY);
    (go as () => void)();
    expect(await first).toBe('ok');
    await fs.ops.release!(path, fd1);
    await fs.ops.write!(path, fd2, Buffer.from('second'), 6, 0);
    await fs.ops.flush!(path, fd2);
    await fs.ops.release!(path, fd2);
    expect(await readFile(path)).toEqual(Buffer.from('second'));
    expect(fs.uploader.pending()).toEqual([]);
  });

  it('appends to an existing file by fetching its bytes first', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    const fd = await fs.ops.open!(path, constants.O_WRONLY | constants.O_APPEND);
    await fs.ops.write!(path, fd, Buffer.from(' world'), 6, 5);
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    expect(await readFile(path)).toEqual(Buffer.from('hello world'));
  });

  it('concurrent writes into a file fetched from XNAT all land (one fill of the spool)', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`; // "hello"
    const fd = await fs.ops.open!(path, constants.O_WRONLY);
    await Promise.all([
      fs.ops.write!(path, fd, Buffer.from('J'), 1, 0),
      fs.ops.write!(path, fd, Buffer.from('!'), 1, 4),
      fs.ops.write!(path, fd, Buffer.from('+more'), 5, 5),
    ]);
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    expect((await readFile(path)).toString()).toBe('Jell!+more');
  });

  it('returns EIO when the upload fails, keeps the spool and uploads it once XNAT recovers', async () => {
    await fs.ops.mkdir!(`${E}/resources/RESULTS`, 0o755);
    const orig = x.uploadFile.bind(x);
    let failures = 3;
    x.uploadFile = async (...a) => { if (failures-- > 0) throw new XnatError('server', 'HTTP 500', 500); return orig(...a); };
    const path = `${E}/resources/RESULTS/files/out.nii`;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('precious'), 8, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EIO');
    await fs.ops.release!(path, fd);
    expect(fs.uploader.pending()).toHaveLength(1);
    // the bytes, and a note saying where they belong (for a later mount if this one is killed)
    expect((await readdir(fs.spoolDir)).filter((n) => !n.endsWith('.upload.json'))).toHaveLength(1);
    expect((await readdir(fs.spoolDir)).filter((n) => n.endsWith('.upload.json'))).toHaveLength(1);
    const left = await fs.shutdown(5000);
    expect(left).toEqual([]);
    expect(await readFile(path)).toEqual(Buffer.from('precious'));
    // Uploaded: nothing is left in the spool, whose emptied folder is removed.
    await expect(readdir(fs.spoolDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('at unmount: refuses new writes, lets a file being written finish and uploads it, reports one never closed', async () => {
    const done = `${NOTES}/done.txt`;
    const fd = await fs.ops.create!(done, 0o644);
    await fs.ops.write!(done, fd, Buffer.from('first half,'), 11, 0);
    const stuck = `${NOTES}/stuck.txt`;
    const fdStuck = await fs.ops.create!(stuck, 0o644);
    await fs.ops.write!(stuck, fdStuck, Buffer.from('never closed'), 12, 0);
    const shutdown = fs.shutdown(600);
    await new Promise((r) => setTimeout(r, 50));
    expect(await errno(fs.ops.create!(`${NOTES}/late.txt`, 0o644))).toBe('EROFS');
    expect(await errno(fs.ops.mkdir!(`${E}/resources/LATE`, 0o755))).toBe('EROFS');
    // the program already writing goes on and closes its file: that upload is waited for
    await fs.ops.write!(done, fd, Buffer.from(' second half'), 12, 11);
    await fs.ops.flush!(done, fd);
    await fs.ops.release!(done, fd);
    const left = await shutdown;
    const stored = x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files;
    expect(stored.get('done.txt')?.toString()).toBe('first half, second half');
    expect(stored.has('stuck.txt')).toBe(false);
    expect(left).toEqual([{ displayPath: stuck, spoolPath: expect.stringContaining(fs.spoolDir), lastError: 'still open for writing by a program at unmount' }]);
  });

  it("at unmount: a file unlinked while still open (a program's scratch file) is neither waited for nor reported, and leaves nothing in the spool", async () => {
    const path = `${NOTES}/scratch.tmp`;
    const fd = await fs.ops.create!(path, 0o600);
    await fs.ops.write!(path, fd, Buffer.from('scratch'), 7, 0);
    await fs.ops.rename!(path, `${NOTES}/.fuse_hidden0000002c00000001`); // the kernel's unlink, through libfuse
    const started = Date.now();
    const left = await fs.shutdown(2000);
    expect(left).toEqual([]); // the mount's exit status would say uploads failed (3)
    expect(Date.now() - started).toBeLessThan(1000);
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual([]);
    // nothing for the next mount to call "a partly written file from an earlier mount that was killed"
    await expect(readdir(fs.spoolDir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  // A batch job's end: the scheduler's SIGTERM reaches the mount and the cp writing into it at
  // once. The killed cp's close() uploads the bytes it had written, as a killed cp leaves a short
  // file on a disk, but here nothing said so: a result cut short sat on XNAT without a word.
  it('at unmount: a file closed during the wait is uploaded with one line naming it and its size (its writer may have been killed)', async () => {
    const path = `${NOTES}/big.nii`;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('the first 271 MB'), 16, 0);
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      const shutdown = fs.shutdown(2000);
      await new Promise((r) => setTimeout(r, 50));
      await fs.ops.flush!(path, fd); // the killed cp's descriptor is closed by the kernel
      await fs.ops.release!(path, fd);
      expect(await shutdown).toEqual([]);
    } finally {
      spy.mockRestore();
    }
    expect(x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files.get('big.nii')?.length).toBe(16);
    expect(lines).toEqual([
      `xnatfs: ${path} was still being written when the unmount began; it was closed at 16 bytes and is uploaded as it is: if the program writing it was killed (a batch system's SIGTERM reaches every process of the job), it is cut short on XNAT: compare its size and copy it again`,
    ]);
  });

  it('treats a duplicates reply as a failure, never a success', async () => {
    const path = `${NOTES}/fresh.txt`;
    const fd = await fs.ops.create!(path, 0o644);
    x.addFile(expOwner, 'NOTES', 'fresh.txt', Buffer.from('someone else'));
    await fs.ops.write!(path, fd, Buffer.from('mine'), 4, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EIO');
    await fs.ops.release!(path, fd);
    // background retries never turn it into an overwrite: their file stays, ours stays spooled
    const left = await fs.shutdown(300);
    expect(x.calls.filter((c) => c === 'upload fresh.txt').length).toBeGreaterThan(1);
    expect(left.map((l) => l.displayPath)).toEqual([path]);
    const stored = [...x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files].find(([p]) => p === 'fresh.txt')![1];
    expect(stored.toString()).toBe('someone else');
  });

  it('unlink deletes on XNAT; rmdir of a non-empty resource is ENOTEMPTY, of an empty one deletes it', async () => {
    expect(await errno(fs.ops.rmdir!(`${E}/resources/NOTES`))).toBe('ENOTEMPTY');
    await fs.ops.unlink!(`${NOTES}/sub dir/a#b.txt`);
    expect(await errno(fs.ops.getattr!(`${NOTES}/sub dir/a#b.txt`))).toBe('ENOENT');
    // the emptied folder stays until rmdir, as on a disk (rm -r relies on it)
    expect((await fs.ops.readdir!(NOTES)).names).toContain('sub dir');
    await fs.ops.rmdir!(`${NOTES}/sub dir`);
    await fs.ops.rmdir!(NOTES);
    await fs.ops.rmdir!(`${E}/resources/NOTES`);
    expect(x.calls).toContain('rmres 101'); // NOTES, by its numeric id
    expect((await fs.ops.readdir!(`${E}/resources`)).names).not.toContain('NOTES');
  });

  it('a resource made and removed here leaves nothing in resource-times.json (a scratch resource per job would pile up)', async () => {
    const times = async (): Promise<string[]> =>
      Object.keys((JSON.parse(await readFileFs(join(cacheDir, 'resource-times.json'), 'utf8')) as { resources: object }).resources);
    for (const name of ['scratch1', 'scratch2']) {
      await fs.ops.mkdir!(`${E}/resources/${name}`, 0o755);
      await writeFile(`${E}/resources/${name}/files/out.txt`, Buffer.from('result'));
      await fs.ops.getattr!(`${E}/resources/${name}/files/out.txt`);
      await fs.ops.unlink!(`${E}/resources/${name}/files/out.txt`);
      await fs.ops.rmdir!(`${E}/resources/${name}/files`);
      await fs.ops.rmdir!(`${E}/resources/${name}`);
    }
    await fs.ops.getattr!(`${NOTES}/sub dir/a#b.txt`); // a resource that stays
    await fs.shutdown(1000);
    const left = await times();
    expect(left.length).toBeGreaterThan(0);
    const ids = [...x.resources.values()].flat().map((r) => r.resource.id);
    expect(left.filter((k) => !ids.includes(k.slice(k.lastIndexOf(':') + 1)))).toEqual([]);
    fs = await build(); // afterEach shuts it down
  });

  it('rename moves the bytes and leaves nothing at the old name', async () => {
    const src = `${NOTES}/sub dir/a#b.txt`;
    const dst = `${NOTES}/moved.txt`;
    await fs.ops.rename!(src, dst);
    expect(await readFile(dst)).toEqual(Buffer.from('hello'));
    expect(await errno(fs.ops.getattr!(src))).toBe('ENOENT');
  });

  it('a name XNAT cannot store is refused at create, rename and mkdir (EINVAL, ENAMETOOLONG), not accepted and lost at upload', async () => {
    // `echo x > name` in bash never sees the error of the close that uploads: the name must fail first.
    const refused = async (p: unknown): Promise<string> => errno(p);
    await fs.ops.mkdir!(`${NOTES}/out`, 0o755);
    expect(await refused(fs.ops.create!(`${NOTES}/out/naïve.txt`, 0o644))).toBe('EINVAL'); // escapes, no space, in a folder
    expect(await refused(fs.ops.create!(`${NOTES}/out/50%.txt`, 0o644))).toBe('EINVAL');
    expect(await refused(fs.ops.create!(`${NOTES}/a%2Fb.txt`, 0o644))).toBe('EINVAL'); // would land as a/b.txt
    expect(await refused(fs.ops.create!(`${NOTES}/%2E`, 0o644))).toBe('EINVAL');
    expect(await refused(fs.ops.create!(`${NOTES}/${'L'.repeat(252)}.txt`, 0o644))).toBe('ENAMETOOLONG');
    expect(await refused(fs.ops.create!(`${NOTES}/${'é'.repeat(127)}.t`, 0o644))).toBe('ENAMETOOLONG'); // 256 bytes
    expect(await refused(fs.ops.rename!(`${NOTES}/sub dir/a#b.txt`, `${NOTES}/out/c#d.txt`))).toBe('EXDEV'); // mv copies: create says EINVAL
    expect(await refused(fs.ops.mkdir!(`${NOTES}/x%2Fy`, 0o755))).toBe('EINVAL');
    expect(await refused(fs.ops.mkdir!(`${NOTES}/${'d'.repeat(256)}`, 0o755))).toBe('ENAMETOOLONG');
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual([]);
    expect((await fs.ops.readdir!(NOTES)).names).not.toContain('a%2Fb.txt');
    // What XNAT can store still goes: a space makes XNAT decode the path; the top level takes any name.
    await writeFile(`${NOTES}/sub dir/a b#c.txt`, Buffer.from('1'));
    await writeFile(`${NOTES}/naïve.txt`, Buffer.from('2'));
    await writeFile(`${NOTES}/${'L'.repeat(251)}.txt`, Buffer.from('3'));
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual(['upload sub dir/a b#c.txt', 'upload naïve.txt', `upload ${'L'.repeat(251)}.txt`]);
  });

  it("an editor's save (write temp, close, rename over the target) works", async () => {
    const target = `${NOTES}/doc.txt`;
    await writeFile(target, Buffer.from('v1'));
    await writeFile(`${NOTES}/.doc.txt.swp`, Buffer.from('v2 longer'));
    await fs.ops.rename!(`${NOTES}/.doc.txt.swp`, target);
    expect(await readFile(target)).toEqual(Buffer.from('v2 longer'));
    expect((await fs.ops.readdir!(NOTES)).names).not.toContain('.doc.txt.swp');
  });

  it('a refused upload (403) fails close() with EACCES and keeps no half-done state', async () => {
    x.uploadFile = async () => { throw new XnatError('forbidden', 'no edit rights', 403); };
    const path = `${NOTES}/nope.txt`;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('data'), 4, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EACCES');
    await fs.ops.release!(path, fd);
    expect(fs.uploader.pending()).toEqual([]);
    expect(await readdir(fs.spoolDir)).toEqual([]);
    expect(await errno(fs.ops.getattr!(path))).toBe('ENOENT');
  });

  it('a close before anything is written uploads nothing (shell redirection: open, dup2, close); an empty file goes up at release', async () => {
    const path = `${NOTES}/out.txt`;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.flush!(path, fd); // close(3) after dup2(3, 1)
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual([]);
    await fs.ops.write!(path, fd, Buffer.from('hi\n'), 3, 0);
    await fs.ops.flush!(path, fd); // close(1)
    await fs.ops.release!(path, fd);
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual(['upload out.txt']);
    expect(await readFile(path)).toEqual(Buffer.from('hi\n'));

    const empty = `${NOTES}/marker.done`; // touch
    const fd2 = await fs.ops.create!(empty, 0o644);
    await fs.ops.flush!(empty, fd2);
    await fs.ops.release!(empty, fd2);
    await fs.uploader.drain(1000);
    const stored = x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files;
    expect(stored.get('marker.done')).toEqual(Buffer.alloc(0));
  });

  it('chmod and chown succeed when they change nothing (tar -x, cp -a) and are EPERM otherwise', async () => {
    const file = `${NOTES}/sub dir/a#b.txt`;
    const st = await fs.ops.getattr!(file);
    await fs.ops.chmod!(file, constants.S_IFREG | 0o644);
    await fs.ops.chmod!(NOTES, 0o755);
    expect(await errno(fs.ops.chmod!(file, 0o755))).toBe('EPERM');
    await fs.ops.chown!(file, st.uid, st.gid);
    await fs.ops.chown!(file, 0xffffffff, st.gid); // -1: leave the owner as it is
    expect(await errno(fs.ops.chown!(file, st.uid + 1, st.gid))).toBe('EPERM');
    expect(await errno(fs.ops.chmod!(`${NOTES}/missing`, 0o644))).toBe('ENOENT');
  });

  it("rsync -a and cp -a into the mount: a file or folder made here takes any mode, owner and times (not kept), also after its upload", async () => {
    const y2020 = Date.parse('2020-01-01T00:00:00Z');
    const st = await fs.ops.getattr!(`${NOTES}/sub dir/a#b.txt`);
    // rsync: mkdir and chmod the folder, mkstemp (a 0600 file, fchmod 0600), write, close,
    // then chown, chmod and utimes of the closed (uploaded) temporary file, then rename it.
    await fs.ops.mkdir!(`${NOTES}/out`, 0o700);
    await fs.ops.chmod!(`${NOTES}/out`, 0o700);
    const tmp = `${NOTES}/out/.result.txt.AbC123`;
    const fd = await fs.ops.create!(tmp, 0o600);
    await fs.ops.chmod!(tmp, 0o600);
    await fs.ops.write!(tmp, fd, Buffer.from('result'), 6, 0);
    await fs.ops.flush!(tmp, fd);
    await fs.ops.release!(tmp, fd);
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual(['upload out/.result.txt.AbC123']);
    await fs.ops.chown!(tmp, st.uid + 1, st.gid + 1);
    await fs.ops.chmod!(tmp, 0o640);
    await fs.ops.utimens!(tmp, y2020, y2020);
    expect((await fs.ops.getattr!(tmp)).mode & 0o7777).toBe(0o644); // shown as every file: not kept
    await fs.ops.rename!(tmp, `${NOTES}/out/result.txt`);
    await fs.ops.utimens!(`${NOTES}/out/result.txt`, y2020, y2020); // still ours under the new name
    await fs.ops.utimens!(`${NOTES}/out`, y2020, y2020);
    expect(await readFile(`${NOTES}/out/result.txt`)).toEqual(Buffer.from('result'));
    // A file as XNAT has it still refuses a change, and so does one removed and copied in by others.
    expect(await errno(fs.ops.chmod!(`${NOTES}/sub dir/a#b.txt`, 0o600))).toBe('EPERM');
    await fs.ops.unlink!(`${NOTES}/out/result.txt`);
    x.addFile(expOwner, 'NOTES', 'out/result.txt', Buffer.from('theirs'));
    fs.catalogue.invalidateFiles(expOwner);
    expect(await errno(fs.ops.chmod!(`${NOTES}/out/result.txt`, 0o600))).toBe('EPERM');
    expect(await errno(fs.ops.utimens!(`${NOTES}/out/result.txt`, y2020, y2020))).toBe('EPERM');
  });

  it('utimens: touch of a file on XNAT is EPERM and shows nothing new; cp -p of a new file succeeds without keeping the time', async () => {
    const mounted = (await fs.ops.getattr!(NOTES)).mtime.getTime();
    const y2020 = Date.parse('2020-01-01T00:00:00Z');
    // touch / touch -d: open O_WRONLY (no O_TRUNC), futimens, close
    const onXnat = `${NOTES}/sub dir/a#b.txt`;
    const fd = await fs.ops.open!(onXnat, constants.O_WRONLY);
    expect((await fs.ops.getattr!(onXnat)).mtime.getTime()).toBe(mounted); // opened is not changed
    // `touch` sets the time of now: at least a millisecond after the time shown (its listing's)
    const now = Math.max(Date.now(), mounted + 1);
    expect(await errno(fs.ops.utimens!(onXnat, now, now))).toBe('EPERM');
    expect(await errno(fs.ops.utimens!(onXnat, y2020, y2020))).toBe('EPERM');
    await fs.ops.utimens!(onXnat, mounted, mounted); // touch -r of another file: nothing changes
    await fs.ops.flush!(onXnat, fd);
    await fs.ops.release!(onXnat, fd);
    expect((await fs.ops.getattr!(onXnat)).mtime.getTime()).toBe(mounted);
    expect(await errno(fs.ops.utimens!(onXnat, y2020, y2020))).toBe('EPERM'); // by path, not open
    // files/ and the folders in it take any time, not kept (cp -a src/. files/ sets files/'s own).
    await fs.ops.utimens!(NOTES, y2020, y2020);
    await fs.ops.utimens!(`${NOTES}/sub dir`, y2020, y2020);
    expect((await fs.ops.getattr!(NOTES)).mtime.getTime()).toBe(mounted);
    expect(await errno(fs.ops.utimens!(`${E}/resources/NOTES`, y2020, y2020))).toBe('EPERM');
    expect(await errno(fs.ops.utimens!(`${NOTES}/missing`, y2020, y2020))).toBe('ENOENT');
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual([]);

    // cp -p: create, write, futimens, close; and a folder made here (cp -a)
    await fs.ops.mkdir!(`${NOTES}/copied`, 0o755);
    await fs.ops.utimens!(`${NOTES}/copied`, y2020, y2020);
    const copy = `${NOTES}/copied/result.txt`;
    const fd2 = await fs.ops.create!(copy, 0o644);
    await fs.ops.write!(copy, fd2, Buffer.from('r'), 1, 0);
    const written = (await fs.ops.getattr!(copy)).mtime.getTime();
    await fs.ops.utimens!(copy, y2020, y2020);
    expect((await fs.ops.getattr!(copy)).mtime.getTime()).toBe(written); // not kept: XNAT won't
    await fs.ops.flush!(copy, fd2);
    await fs.ops.release!(copy, fd2);
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual(['upload copied/result.txt']);
    // On XNAT: like every file of its resource, the time the resource was seen to change (now).
    const uploaded = (await fs.ops.getattr!(copy)).mtime.getTime();
    expect(uploaded).toBe((await fs.ops.getattr!(onXnat)).mtime.getTime());
    expect(uploaded).toBeGreaterThanOrEqual(written);
  });

  it("an editor's probe file (created, closed, removed: vim's .swp/.swx at start, its 4913) changes no other file's time", async () => {
    // vim compares the time it read a file at with the time at :w, and refuses to write
    // ("WARNING: The file has been changed since reading it!!!"; `vim -es`/`ex` scripts exit 0
    // without writing) when they differ: a probe that leaves the resource as it was must not
    // give its files a new time.
    const other = `${NOTES}/sub dir/a#b.txt`;
    const before = (await fs.ops.getattr!(other)).mtime.getTime();
    await new Promise((r) => setTimeout(r, 5)); // a change would show a later time
    for (const name of ['.a.txt.swx', '.a.txt.swp', '4913']) {
      const probe = `${NOTES}/${name}`;
      const fd = await fs.ops.create!(probe, 0o600);
      await fs.ops.flush!(probe, fd);
      await fs.ops.release!(probe, fd);
      await fs.ops.unlink!(probe);
    }
    expect((await fs.ops.getattr!(other)).mtime.getTime()).toBe(before);
    expect((await fs.ops.readdir!(NOTES)).names).not.toContain('4913');
    // A real change still shows a later time.
    await writeFile(`${NOTES}/kept.txt`, Buffer.from('k'));
    expect((await fs.ops.getattr!(other)).mtime.getTime()).toBeGreaterThan(before);
  });

  it('a file written here shows the same time before and after its upload (vim right after cp: "changed since reading it")', async () => {
    const path = `${NOTES}/fresh.txt`;
    const fd = await fs.ops.create!(path, 0o644);
    await new Promise((r) => setTimeout(r, 5)); // written after the listing's time (a change shows a later one)
    await fs.ops.write!(path, fd, Buffer.from('line1\n'), 6, 0);
    const whileWritten = (await fs.ops.getattr!(path)).mtime.getTime();
    await new Promise((r) => setTimeout(r, 5)); // the upload ends later than the last write
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual(['upload fresh.txt']);
    expect((await fs.ops.getattr!(path)).mtime.getTime()).toBe(whileWritten);
    expect((await fs.ops.getattr!(`${NOTES}/sub dir/a#b.txt`)).mtime.getTime()).toBe(whileWritten);
  });

  /**
   * vim's :wq up to the close of its swap file: the swap file written and fsynced, the file
   * rewritten, the swap file written again and flushed. Returns the file's time after its write.
   */
  async function vimWriteQuit(file: string, swp: string): Promise<{ sfd: number; afterWrite: number }> {
    await writeFile(file, Buffer.from('v1\n'));
    const sfd = await fs.ops.create!(swp, 0o600);
    await fs.ops.write!(swp, sfd, Buffer.alloc(4096, 1), 4096, 0);
    await fs.ops.fsync!(swp, sfd, false);
    await new Promise((r) => setTimeout(r, 5));
    const fd = await fs.ops.open!(file, constants.O_WRONLY | constants.O_TRUNC);
    await fs.ops.write!(file, fd, Buffer.from('v2\n'), 3, 0);
    await fs.ops.fsync!(file, fd, false);
    await fs.ops.flush!(file, fd);
    await fs.ops.release!(file, fd);
    const afterWrite = (await fs.ops.getattr!(file)).mtime.getTime(); // vim's stat after writing
    await new Promise((r) => setTimeout(r, 5));
    await fs.ops.write!(swp, sfd, Buffer.alloc(4096, 2), 4096, 4096);
    await fs.ops.flush!(swp, sfd);
    return { sfd, afterWrite };
  }

  it("vim's :wq (swap file written, the file written, the swap file removed) leaves the file the time vim saw after writing it", async () => {
    const file = `${NOTES}/edited.txt`;
    const swp = `${NOTES}/.edited.txt.swp`;
    const { sfd, afterWrite } = await vimWriteQuit(file, swp);
    await fs.ops.release!(swp, sfd);
    await fs.ops.unlink!(swp);
    expect(await readFile(file)).toEqual(Buffer.from('v2\n'));
    expect((await fs.ops.getattr!(file)).mtime.getTime()).toBe(afterWrite);
    // the next vim run's probes
    await new Promise((r) => setTimeout(r, 5));
    for (const name of ['.edited.txt.swx', '.edited.txt.swp']) {
      const probe = `${NOTES}/${name}`;
      const pfd = await fs.ops.create!(probe, 0o600);
      await fs.ops.flush!(probe, pfd);
      await fs.ops.release!(probe, pfd);
      await fs.ops.unlink!(probe);
      expect((await fs.ops.getattr!(file)).mtime.getTime()).toBe(afterWrite);
    }
  });

  it("vim's :wq whose swap-file release comes after its unlink (libfuse renames it .fuse_hidden…): nothing goes up under that name, and no listing gives the file a new time", async () => {
    const file = `${NOTES}/edited.txt`;
    const swp = `${NOTES}/.edited.txt.swp`;
    // vim's close() of the swap file: its release is still to come when vim's unlink arrives
    const { sfd, afterWrite } = await vimWriteQuit(file, swp);
    const hidden = `${NOTES}/.fuse_hidden0000002a00000001`;
    const dotted = async (): Promise<string[]> => (await fs.ops.readdir!(NOTES)).names.filter((n) => n.startsWith('.') && n.length > 2);
    x.calls.length = 0;
    await fs.ops.rename!(swp, hidden);
    expect(x.calls.filter((c) => c.startsWith('upload') || c.startsWith('delete'))).toEqual(['delete .edited.txt.swp']);
    // still there for the handle: fstat and reads through it, and ls shows it as on any FUSE mount
    expect((await fs.ops.getattr!(hidden)).size).toBe(8192);
    const buf = Buffer.alloc(10);
    expect(await fs.ops.read!(hidden, sfd, buf, 10, 4096)).toBe(10);
    expect(buf).toEqual(Buffer.alloc(10, 2));
    expect(await dotted()).toEqual(['.fuse_hidden0000002a00000001']);
    await fs.ops.release!(hidden, sfd);
    await fs.ops.unlink!(hidden).catch(() => undefined); // libfuse's, at the release; it ignores the answer
    expect(x.calls.filter((c) => c.startsWith('upload') || c.startsWith('delete'))).toEqual(['delete .edited.txt.swp']);
    expect(await dotted()).toEqual([]);
    expect(await readdir(fs.spoolDir)).toEqual([]);
    expect((await fs.ops.getattr!(file)).mtime.getTime()).toBe(afterWrite);
    // XNAT's next listing (here at the next mount) shows just these changes: the time stays.
    await fs.shutdown(1000);
    fs = await build();
    expect((await fs.ops.getattr!(file)).mtime.getTime()).toBe(afterWrite);
  });

  it('a file made here and renamed (rsync: a temporary file, then rename) keeps its time, and the next listing keeps it too', async () => {
    const other = `${NOTES}/sub dir/a#b.txt`;
    const tmpName = `${NOTES}/.out.nii.X1b2C3`;
    await writeFile(tmpName, Buffer.from('result'));
    const written = (await fs.ops.getattr!(tmpName)).mtime.getTime();
    await new Promise((r) => setTimeout(r, 20)); // a time taken at the rename would be later
    await fs.ops.rename!(tmpName, `${NOTES}/out.nii`);
    const shown = (await fs.ops.getattr!(`${NOTES}/out.nii`)).mtime.getTime();
    // rename(2) changes no file's time; 1 ms later at most (a change of the resource shows a later time)
    expect(shown - written).toBeGreaterThanOrEqual(0);
    expect(shown - written).toBeLessThanOrEqual(1);
    expect((await fs.ops.getattr!(other)).mtime.getTime()).toBe(shown);
    await fs.shutdown(1000);
    fs = await build();
    expect(await readFile(`${NOTES}/out.nii`)).toEqual(Buffer.from('result'));
    expect((await fs.ops.getattr!(other)).mtime.getTime()).toBe(shown);
  });

  /** XNAT deletes by prefix: the real client refuses a delete that would widen (XnatApi.deleteFile). */
  function refusePrefixDeletes(): void {
    const del = x.deleteFile.bind(x);
    x.deleteFile = async (owner, resource, path, known) => {
      const others = (known ?? (await x.listFiles(owner, resource)).map((f) => f.path)).filter((p) => p !== path && p.startsWith(path));
      if (others.length > 0) throw new XnatError('conflict', `not deleted: XNAT deletes by prefix and would also remove ${others.join(', ')}`);
      return del(owner, resource, path, known);
    };
  }

  it("rm of a file open for writing that XNAT cannot delete alone (prefix) is EPERM and changes nothing: the handle's writes still go up at its close", async () => {
    refusePrefixDeletes();
    await writeFile(`${NOTES}/scan.nii.gz`, Buffer.from('gz'));
    const path = `${NOTES}/scan.nii`;
    await writeFile(path, Buffer.from('orig\n'));
    const fd = await fs.ops.open!(path, constants.O_WRONLY | constants.O_APPEND);
    await fs.ops.write!(path, fd, Buffer.from('first\n'), 6, 5);
    // The kernel's unlink of an open file reaches xnatfs as libfuse's rename to .fuse_hidden…
    expect(await errno(fs.ops.rename!(path, `${NOTES}/.fuse_hidden0000002b00000001`))).toBe('EPERM');
    expect(await errno(fs.ops.unlink!(path))).toBe('EPERM'); // and a plain rm the same
    await fs.ops.write!(path, fd, Buffer.from('second\n'), 7, 11);
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    const stored = (await x.listFiles(expOwner, 'NOTES')).map((f) => f.path).sort();
    expect(stored).toEqual(['scan.nii', 'scan.nii.gz', 'sub dir/a#b.txt']);
    expect(await readFile(path)).toEqual(Buffer.from('orig\nfirst\nsecond\n'));
  });

  it('mv of a file XNAT cannot delete alone (prefix) is EPERM before anything is uploaded: no copy is left under the new name', async () => {
    refusePrefixDeletes();
    await writeFile(`${NOTES}/scan.nii.gz`, Buffer.from('gz'));
    await writeFile(`${NOTES}/scan.nii`, Buffer.from('nii'));
    x.calls.length = 0;
    expect(await errno(fs.ops.rename!(`${NOTES}/scan.nii`, `${NOTES}/other.nii`))).toBe('EPERM');
    expect(x.calls.filter((c) => c.startsWith('upload') || c.startsWith('delete'))).toEqual([]);
    expect((await x.listFiles(expOwner, 'NOTES')).map((f) => f.path).sort()).toEqual(['scan.nii', 'scan.nii.gz', 'sub dir/a#b.txt']);
    await errno(fs.ops.getattr!(`${NOTES}/other.nii`));
    expect(await readFile(`${NOTES}/scan.nii`)).toEqual(Buffer.from('nii'));
  });

  it('mv x x.1 (a new name the old one is a prefix of: XNAT would delete both) is EPERM before anything is uploaded', async () => {
    refusePrefixDeletes();
    await writeFile(`${NOTES}/run.log`, Buffer.from('log'));
    x.calls.length = 0;
    expect(await errno(fs.ops.rename!(`${NOTES}/run.log`, `${NOTES}/run.log.1`))).toBe('EPERM');
    expect(x.calls.filter((c) => c.startsWith('upload') || c.startsWith('delete'))).toEqual([]);
    expect((await x.listFiles(expOwner, 'NOTES')).map((f) => f.path).sort()).toEqual(['run.log', 'sub dir/a#b.txt']);
    expect(await readdir(fs.spoolDir)).toEqual([]);
    // the other way round deletes nothing of the new name
    await fs.ops.rename!(`${NOTES}/run.log`, `${NOTES}/run`);
    expect((await x.listFiles(expOwner, 'NOTES')).map((f) => f.path).sort()).toEqual(['run', 'sub dir/a#b.txt']);
  });

  it('mv whose delete of the old name fails after the upload under the new one leaves nothing in the spool (the next mount would report it as a killed write)', async () => {
    const src = `${NOTES}/a.txt`;
    await writeFile(src, Buffer.from('abc'));
    const del = x.deleteFile.bind(x);
    x.deleteFile = async () => { throw new XnatError('server', 'HTTP 500', 500); };
    expect(await errno(fs.ops.rename!(src, `${NOTES}/b.txt`))).toBe('EIO');
    x.deleteFile = del;
    expect(await readdir(fs.spoolDir)).toEqual([]);
    expect(await readFile(`${NOTES}/b.txt`)).toEqual(Buffer.from('abc'));
  });

  it('while the first write to a file on XNAT copies it into the spool, other handles see its full size and bytes, not the part copied so far', async () => {
    const data = randomBytes(5 << 20);
    x.addFile(expOwner, 'NOTES', 'big.bin', data);
    const path = `${NOTES}/big.bin`;
    const a = await fs.ops.open!(path, constants.O_RDWR);
    const b = await fs.ops.open!(path, constants.O_RDWR);
    let done = false;
    const writing = Promise.resolve(fs.ops.write!(path, a, Buffer.from('X'), 1, 0)).finally(() => { done = true; });
    const sizes = new Set<number>();
    const tail = Buffer.alloc(16);
    let wrong = 0;
    while (!done) {
      sizes.add((await fs.ops.getattr!(path)).size);
      const n = await fs.ops.read!(path, b, tail, 16, data.length - 16);
      if (n !== 16 || !tail.equals(data.subarray(data.length - 16))) wrong++;
      await new Promise((r) => setImmediate(r));
    }
    await writing;
    expect([...sizes]).toEqual([data.length]);
    expect(wrong).toBe(0);
    await fs.ops.release!(path, a);
    await fs.ops.release!(path, b);
  });

  it("libfuse's rename to .fuse_hidden… of a file whose last handle was released meanwhile (release and unlink crossing) deletes it, and uploads nothing under the hidden name", async () => {
    const swp = `${NOTES}/.edited.txt.swp`;
    await writeFile(swp, Buffer.from('swap')); // closed and released: uploaded, no longer pending
    x.calls.length = 0;
    await fs.ops.rename!(swp, `${NOTES}/.fuse_hidden0000002d00000001`);
    expect(x.calls.filter((c) => c.startsWith('upload') || c.startsWith('delete'))).toEqual(['delete .edited.txt.swp']);
    expect((await fs.ops.readdir!(NOTES)).names.filter((n) => n.startsWith('.') && n.length > 2)).toEqual([]);
  });

  it('rm of a file on XNAT open only for reading deletes it on XNAT at once; its handle reads on from a copy here, and nothing goes up under the hidden name', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    const hidden = `${NOTES}/sub dir/.fuse_hidden0000002e00000001`;
    const fd = await fs.ops.open!(path, constants.O_RDONLY);
    x.calls.length = 0;
    await fs.ops.rename!(path, hidden); // the kernel's unlink of an open file, through libfuse
    // it was uploaded under the hidden name and stayed on XNAT until the release
    expect(x.calls.filter((c) => c.startsWith('upload') || c.startsWith('delete'))).toEqual(['delete sub dir/a#b.txt']);
    expect((await x.listFiles(expOwner, 'NOTES')).map((f) => f.path)).toEqual([]);
    expect(await readHead(hidden, fd)).toBe('hello');
    expect((await fs.ops.getattr!(hidden)).size).toBe(5); // fstat
    await fs.ops.release!(hidden, fd);
    await fs.ops.unlink!(hidden).catch(() => undefined); // libfuse's, at the release
    expect(x.calls.filter((c) => c.startsWith('upload') || c.startsWith('delete'))).toEqual(['delete sub dir/a#b.txt']);
    expect(await errno(fs.ops.getattr!(hidden))).toBe('ENOENT');
    expect(await readdir(fs.spoolDir)).toEqual([]);
  });

  it("rm of a file written here whose upload succeeded, also one still under way, costs its DELETE and no listing (vim's probes at each start)", async () => {
    await fs.ops.readdir!(NOTES);
    const orig = x.uploadFile.bind(x);
    x.uploadFile = async (...a) => {
      await new Promise((r) => setTimeout(r, 20));
      return orig(...a);
    };
    const probe = `${NOTES}/.doc.txt.swx`;
    const fd = await fs.ops.create!(probe, 0o600);
    await fs.ops.flush!(probe, fd);
    await fs.ops.release!(probe, fd); // an empty file goes up now, after close() returned
    x.calls.length = 0;
    await fs.ops.unlink!(probe); // while that upload is under way
    expect(x.calls).toEqual(['upload .doc.txt.swx', 'delete .doc.txt.swx']); // it listed NOTES (and the resources) again
    expect((await x.listFiles(expOwner, 'NOTES')).map((f) => f.path)).toEqual(['sub dir/a#b.txt']);
  });

  it('rm of a file written here whose upload landed but went unanswered reads the listing again and deletes that copy', async () => {
    const path = `${NOTES}/lost.txt`;
    x.loseAnswers = 1;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('landed'), 6, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EIO');
    await fs.ops.release!(path, fd);
    expect((await x.listFiles(expOwner, 'NOTES')).map((f) => f.path)).toContain('lost.txt');
    await fs.ops.unlink!(path);
    expect((await x.listFiles(expOwner, 'NOTES')).map((f) => f.path)).toEqual(['sub dir/a#b.txt']);
  });

  it('a file unlinked while open is never uploaded', async () => {
    const path = `${NOTES}/scratch.txt`;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('temp'), 4, 0);
    await fs.ops.unlink!(path);
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    expect(x.calls.filter((c) => c.startsWith('upload'))).toEqual([]);
    expect(await readdir(fs.spoolDir)).toEqual([]);
  });

  it("files copied one after another into a scan resource cost a PUT and that resource's listing each, not the session's bulk listing", async () => {
    const dir = `${E}/scans/4-Ax_3D_T1/resources/NIFTI`;
    await fs.ops.mkdir!(dir, 0o755);
    await writeFile(`${dir}/files/run-0.nii`, Buffer.from('0'));
    x.calls.length = 0;
    for (let i = 1; i <= 4; i++) {
      // cp looks the destination up first, then writes it.
      await errno(fs.ops.getattr!(`${dir}/files/run-${i}.nii`));
      await writeFile(`${dir}/files/run-${i}.nii`, Buffer.from(String(i)));
    }
    const listings = x.calls.filter((c) => !c.startsWith('upload'));
    expect(listings.filter((c) => c.startsWith('scanfiles') || c.startsWith('resources') || c.startsWith('allresources'))).toEqual([]);
    expect(listings.length).toBeLessThanOrEqual(4);
    expect((await fs.ops.readdir!(`${dir}/files`)).names.sort()).toEqual(['.', '..', ...[0, 1, 2, 3, 4].map((i) => `run-${i}.nii`)]);
    expect(await readFile(`${dir}/files/run-3.nii`)).toEqual(Buffer.from('3'));
  });

  it('a read on a handle already let go (racing the unmount) is EBADF, not an EIO to report', async () => {
    const path = `${E}/resources/NOTES/files/sub dir/a#b.txt`;
    expect(await errno(fs.ops.read!(path, 99_999, Buffer.alloc(8), 8, 0))).toBe('EBADF');
  });

  it('an open file keeps the version it was opened on while XNAT replaces or deletes it (close-to-open)', async () => {
    const owner = { level: 'experiment', project: 'P1', experiment: 'XNAT_E00001' } as const;
    const path = `${E}/resources/NOTES/files/sub dir/a#b.txt`;
    const fd = await fs.ops.open!(path, constants.O_RDONLY);
    expect(await readHead(path, fd)).toBe('hello');
    // Replaced elsewhere by a shorter file, and the listing read again (its TTL ran out).
    x.addFile(owner, 'NOTES', 'sub dir/a#b.txt', Buffer.from('hi'));
    fs.catalogue.invalidateFiles(owner);
    expect((await fs.ops.getattr!(path)).size).toBe(5);
    const second = await fs.ops.open!(path, constants.O_RDONLY);
    expect(await readHead(path, second)).toBe('hello');
    await fs.ops.release!(path, second);
    // Deleted elsewhere: still there for the open handle.
    await x.deleteFile(owner, 'NOTES', 'sub dir/a#b.txt');
    fs.catalogue.invalidateFiles(owner);
    expect((await fs.ops.getattr!(path)).size).toBe(5);
    expect(await readHead(path, fd)).toBe('hello');
    await fs.ops.release!(path, fd);
    // Every handle closed: the next look sees XNAT as it is now.
    expect(await errno(fs.ops.getattr!(path))).toBe('ENOENT');
  });

  it('a file written through this mount reads the new bytes through every handle, also one opened before the write, during and after its upload', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    const reader = await fs.ops.open!(path, constants.O_RDONLY);
    expect(await readHead(path, reader)).toBe('hello');
    const writer = await fs.ops.open!(path, constants.O_RDWR);
    await fs.ops.write!(path, writer, Buffer.from('J'), 1, 0);
    expect(await readHead(path, writer)).toBe('Jello');
    expect(await readHead(path, reader)).toBe('Jello'); // as on a disk (it read 'hello' before)
    await fs.ops.flush!(path, writer);
    await fs.ops.release!(path, writer);
    expect(await readHead(path, reader)).toBe('Jello'); // uploaded: XNAT's new version
    // Replaced again, by cp (O_TRUNC), while the reader stays open.
    const cp = await fs.ops.create!(path, 0o644);
    expect(await readHead(path, reader)).toBe('');
    await fs.ops.write!(path, cp, Buffer.from('yellow'), 6, 0);
    await fs.ops.flush!(path, cp);
    await fs.ops.release!(path, cp);
    expect(await readHead(path, reader)).toBe('yellow');
    await fs.ops.release!(path, reader);
    expect(await readFile(path)).toEqual(Buffer.from('yellow'));
  });

  it('a read handle opened before a write keeps reading the written bytes when the file is removed while open, until its release', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    const hidden = `${NOTES}/sub dir/.fuse_hidden0000003000000001`;
    const reader = await fs.ops.open!(path, constants.O_RDONLY);
    expect(await readHead(path, reader)).toBe('hello');
    const writer = await fs.ops.open!(path, constants.O_RDWR);
    await fs.ops.write!(path, writer, Buffer.from('J'), 1, 0);
    await fs.ops.rename!(path, hidden); // rm while both are open: libfuse's rename
    expect(await readHead(hidden, reader)).toBe('Jello');
    await fs.ops.write!(hidden, writer, Buffer.from('M'), 1, 0);
    await fs.ops.release!(hidden, writer);
    expect(await readHead(hidden, reader)).toBe('Mello'); // it read 'hello' again, XNAT's old version
    expect((await fs.ops.getattr!(hidden)).size).toBe(5); // fstat: it answered ENOENT
    await fs.ops.release!(hidden, reader);
    expect(await errno(fs.ops.getattr!(hidden))).toBe('ENOENT');
    expect(await errno(fs.ops.getattr!(path))).toBe('ENOENT');
  });

  it('a read handle whose file is renamed through this mount sees a write under the new name, as on a disk', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    const moved = `${NOTES}/moved.txt`;
    const reader = await fs.ops.open!(path, constants.O_RDONLY);
    expect(await readHead(path, reader)).toBe('hello');
    await fs.ops.rename!(path, moved); // libfuse's reads now come by the new name
    expect(await readHead(moved, reader)).toBe('hello');
    const writer = await fs.ops.open!(moved, constants.O_RDWR);
    await fs.ops.write!(moved, writer, Buffer.from('J'), 1, 0);
    expect(await readHead(moved, reader)).toBe('Jello'); // it read 'hello' (held by the old name)
    await fs.ops.flush!(moved, writer);
    await fs.ops.release!(moved, writer);
    expect(await readHead(moved, reader)).toBe('Jello');
    await fs.ops.release!(moved, reader);
    expect(await readFile(moved)).toEqual(Buffer.from('Jello'));
  });

  it('a read handle opened before a truncate(2) reads the spool without leaving a descriptor of it open', async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    const spoolFds = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const n of await readdir('/proc/self/fd')) {
        const target = await readlink(`/proc/self/fd/${n}`).catch(() => '');
        if (target.startsWith(fs.spoolDir)) out.push(target);
      }
      return out;
    };
    const reader = await fs.ops.open!(path, constants.O_RDONLY);
    const buf = Buffer.alloc(64);
    expect(await fs.ops.read!(path, reader, buf, 64, 0)).toBe(5);
    await fs.ops.truncate!(path, 2); // no handle of its own: uploaded after its idle time
    expect(await fs.ops.read!(path, reader, buf, 64, 0)).toBe(2);
    await vi.waitFor(async () => {
      expect(fs.overlay.files.size).toBe(0);
      expect(await readdir(fs.spoolDir)).toEqual([]);
    });
    expect(await fs.ops.read!(path, reader, buf, 64, 0)).toBe(2); // XNAT's new version
    await fs.ops.release!(path, reader);
    expect(await spoolFds()).toEqual([]); // the deleted spool stayed open until garbage collection
  });

  it("a read handle opened before a write reads XNAT's new version once XNAT answers again, after a read that failed", async () => {
    const path = `${NOTES}/sub dir/a#b.txt`;
    const buf = Buffer.alloc(64);
    const reader = await fs.ops.open!(path, constants.O_RDONLY);
    expect(await fs.ops.read!(path, reader, buf, 64, 0)).toBe(5);
    const writer = await fs.ops.open!(path, constants.O_RDWR);
    await fs.ops.write!(path, writer, Buffer.from('J'), 1, 0);
    await fs.ops.flush!(path, writer);
    await fs.ops.release!(path, writer);
    await vi.waitFor(() => expect(fs.overlay.files.size).toBe(0));
    const down = vi.spyOn(x, 'listFiles').mockRejectedValue(new XnatError('network', 'XNAT refused the connection', 0));
    fs.catalogue.invalidateFiles(expOwner);
    expect(await errno(fs.ops.read!(path, reader, buf, 64, 0))).toBe('EIO'); // XNAT down (it read 'hello', the old version)
    down.mockRestore();
    const n = await fs.ops.read!(path, reader, buf, 64, 0);
    expect(buf.subarray(0, n).toString()).toBe('Jello'); // it answered EIO (or 'hello') until the handle was closed
    await fs.ops.release!(path, reader);
  });

  it('at unmount, an upload that never succeeds is reported with its spool file, which is kept', async () => {
    const path = await writeRefused('kept.nii', 'do not lose me');
    const left = await fs.shutdown(300);
    expect(left).toHaveLength(1);
    expect(left[0]!.displayPath).toBe(path);
    expect(left[0]!.lastError).toMatch(/503/);
    const { readFile: read } = await import('node:fs/promises');
    expect(await read(left[0]!.spoolPath, 'utf8')).toBe('do not lose me');
    // The next mount of the same server takes the upload up again once XNAT works.
    x.uploadFile = MemoryXnat.prototype.uploadFile.bind(x);
    fs = await build();
    expect(fs.resumedUploads).toEqual([path]);
    expect(await fs.shutdown(5000)).toEqual([]);
    fs = await build();
    expect(await readFile(path)).toEqual(Buffer.from('do not lose me'));
    expect(await readdir(fs.spoolDir)).toEqual([]);
  });

  it('at unmount, an upload XNAT keeps refusing is retried with its backoff, not in a loop', async () => {
    await fs.shutdown(1000);
    fs = await build(false, { uploadRetryDelayMs: 100, uploadMaxRetryDelayMs: 100 });
    await writeRefused('refused.nii', 'x');
    let attempts = 0;
    x.uploadFile = async () => {
      attempts++;
      throw new XnatError('server', 'HTTP 500', 500);
    };
    const left = await fs.shutdown(600);
    expect(left).toHaveLength(1);
    // One right away, then one per 100 ms of backoff (it was one per refusal: thousands).
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(8);
  });

  it('a read-only mount leaves uploads of an earlier mount untouched for the next read-write one', async () => {
    const path = await writeRefused('rotest.txt', 'wait for me');
    const [left] = await fs.shutdown(300);
    const spoolDir = dirname(left!.spoolPath);
    const kept = (await readdir(spoolDir)).sort();
    expect(kept).toHaveLength(2); // the spool file and its note
    x.uploadFile = MemoryXnat.prototype.uploadFile.bind(x);
    const uploads = (): string[] => x.calls.filter((c) => c.startsWith('upload'));
    const before = uploads().length;

    fs = await build(true);
    expect(fs.resumedUploads).toEqual([]);
    expect(fs.waitingUploads).toEqual([path]);
    await new Promise((r) => setTimeout(r, 100)); // longer than the retry delays
    expect(await fs.shutdown(1000)).toEqual([]);
    expect(uploads()).toHaveLength(before);
    expect((await readdir(spoolDir)).sort()).toEqual(kept);

    fs = await build();
    expect(fs.resumedUploads).toEqual([path]);
    expect(await fs.shutdown(5000)).toEqual([]);
    expect(uploads()).toHaveLength(before + 1);
    fs = await build();
    expect(await readFile(path)).toEqual(Buffer.from('wait for me'));
  });

  it('a rename whose upload fails leaves the source as it was', async () => {
    await fs.ops.mkdir!(`${E}/resources/RESULTS`, 0o755);
    const orig = x.uploadFile.bind(x);
    x.uploadFile = async () => { throw new XnatError('server', 'HTTP 500', 500); };
    const src = `${E}/resources/RESULTS/files/a.nii`;
    const fd = await fs.ops.create!(src, 0o644);
    await fs.ops.write!(src, fd, Buffer.from('only copy'), 9, 0);
    expect(await errno(fs.ops.flush!(src, fd))).toBe('EIO');
    await fs.ops.release!(src, fd);
    x.uploadFile = async () => { throw new XnatError('forbidden', 'no edit rights', 403); };
    expect(await errno(fs.ops.rename!(src, `${E}/resources/RESULTS/files/b.nii`))).toBe('EACCES');
    expect((await fs.ops.getattr!(src)).size).toBe(9);
    expect(fs.uploader.pending().map((p) => p.displayPath)).toEqual([src]);
    x.uploadFile = orig;
    expect(await fs.shutdown(5000)).toEqual([]);
    fs = await build();
    expect(await readFile(src)).toEqual(Buffer.from('only copy'));
  });

  describe('uploads that follow the writes (streamUploadBytes: 1000)', () => {
    const path = `${E}/resources/RESULTS/files/big.nii`;
    const data = randomBytes(5000);
    const uploads = () => x.calls.filter((c) => c.startsWith('upload'));
    const stored = () => x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'RESULTS')?.files.get('big.nii');
    beforeEach(async () => {
      await fs.shutdown(100);
      fs = await build(false, { streamUploadBytes: 1000 });
      await fs.ops.mkdir!(`${E}/resources/RESULTS`, 0o755);
      x.calls.length = 0;
    });
    async function writeInParts(fd: number, cuts: number[]): Promise<void> {
      for (let i = 0; i + 1 < cuts.length; i++) {
        const part = data.subarray(cuts[i], cuts[i + 1]);
        await fs.ops.write!(path, fd, part, part.length, cuts[i]!);
      }
    }

    it('starts once the file reaches the threshold, and close() only finishes it', async () => {
      const fd = await fs.ops.create!(path, 0o644);
      await writeInParts(fd, [0, 600]);
      expect(uploads()).toEqual([]);
      await writeInParts(fd, [600, 3000]);
      expect(uploads()).toEqual(['upload big.nii']);
      await writeInParts(fd, [3000, 5000]);
      expect(stored()).toBeUndefined(); // XNAT stores it only once the body is complete
      await fs.ops.flush!(path, fd);
      await fs.ops.release!(path, fd);
      expect(uploads()).toEqual(['upload big.nii']);
      expect(stored()).toEqual(data);
      expect(await readFile(path)).toEqual(data);
      expect(await readdir(fs.spoolDir)).toEqual([]);
    });

    it('once uploaded, the file shows the time of its last write, as while it was written', async () => {
      const fd = await fs.ops.create!(path, 0o644);
      await writeInParts(fd, [0, 3000]);
      expect(uploads()).toEqual(['upload big.nii']);
      await new Promise((r) => setTimeout(r, 10)); // the last write comes well after the upload began
      await writeInParts(fd, [3000, 5000]);
      const whileWritten = (await fs.ops.getattr!(path)).mtime.getTime();
      await fs.ops.flush!(path, fd);
      await fs.ops.release!(path, fd);
      expect(uploads()).toEqual(['upload big.nii']);
      expect((await fs.ops.getattr!(path)).mtime.getTime()).toBe(whileWritten);
    });

    it('a write that is not at the end drops it; close() uploads the spool instead', async () => {
      const fd = await fs.ops.create!(path, 0o644);
      await writeInParts(fd, [0, 3000]);
      await fs.ops.write!(path, fd, Buffer.from('XYZ'), 3, 10);
      await writeInParts(fd, [3000, 5000]);
      await fs.ops.flush!(path, fd);
      await fs.ops.release!(path, fd);
      const expected = Buffer.from(data);
      expected.write('XYZ', 10);
      expect(uploads()).toEqual(['upload big.nii', 'upload big.nii']);
      expect(stored()).toEqual(expected);
    });

    it('truncating below what was written drops it too; truncating to the same size does not', async () => {
      const fd = await fs.ops.create!(path, 0o644);
      await writeInParts(fd, [0, 3000]);
      await fs.ops.ftruncate!(path, fd, 3000);
      await writeInParts(fd, [3000, 5000]);
      await fs.ops.ftruncate!(path, fd, 4000);
      await fs.ops.flush!(path, fd);
      await fs.ops.release!(path, fd);
      expect(uploads()).toEqual(['upload big.nii', 'upload big.nii']);
      expect(stored()).toEqual(data.subarray(0, 4000));
    });

    it('a file deleted while written never lands', async () => {
      const fd = await fs.ops.create!(path, 0o644);
      await writeInParts(fd, [0, 3000]);
      await fs.ops.unlink!(path);
      await fs.ops.flush!(path, fd);
      await fs.ops.release!(path, fd);
      await fs.uploader.drain(1000);
      expect(uploads()).toEqual(['upload big.nii']);
      expect(stored()).toBeUndefined();
      expect(await readdir(fs.spoolDir)).toEqual([]);
    });

    it('when it fails, close() uploads from the spool; a server refusing chunked bodies gets no more of them', async () => {
      const orig = x.uploadFile.bind(x);
      x.uploadFile = async (owner, resource, p, options) => {
        if ('stream' in options) {
          x.calls.push(`upload ${p} (chunked)`);
          throw new XnatError('bad-request', 'HTTP 411 Length Required', 411);
        }
        return orig(owner, resource, p, options);
      };
      for (const name of ['big.nii', 'second.nii']) {
        const p = path.replace('big.nii', name);
        const fd = await fs.ops.create!(p, 0o644);
        await fs.ops.write!(p, fd, data, data.length, 0);
        await fs.ops.flush!(p, fd);
        await fs.ops.release!(p, fd);
      }
      expect(uploads()).toEqual(['upload big.nii (chunked)', 'upload big.nii', 'upload second.nii']);
      expect(stored()).toEqual(data);
    });

    it('a new file whose streamed body went out whole but whose answer was lost: close() uploads the spool without overwrite, finds our copy (size and MD5) and succeeds', async () => {
      x.loseAnswers = 1; // XNAT stores the streamed copy; its answer never arrives
      const fd = await fs.ops.create!(path, 0o644);
      await writeInParts(fd, [0, 3000, 5000]);
      await fs.ops.flush!(path, fd);
      await fs.ops.release!(path, fd);
      expect(x.uploads).toEqual([{ path: 'big.nii', overwrite: false }, { path: 'big.nii', overwrite: false }]);
      expect(stored()).toEqual(data);
      expect(await readdir(fs.spoolDir)).toEqual([]);
    });

    it('a new file whose streamed body went out whole is not sent with overwrite after it: a file someone else stored meanwhile is kept, close() fails', async () => {
      const orig = x.uploadFile.bind(x);
      const theirs = randomBytes(data.length);
      x.uploadFile = async (owner, resource, p, options) => {
        if (!('stream' in options)) return orig(owner, resource, p, options);
        x.uploads.push({ path: p, overwrite: options.overwrite });
        for await (const _ of options.stream()); // our body goes out whole, then the connection drops
        x.addFile(owner, resource, p, theirs); // and someone else's upload of that name lands
        throw new XnatError('network', 'socket hang up');
      };
      // The background retry waits longer than the test: under load it came within the
      // asserts below at 20 ms (a third upload, also without overwrite).
      await fs.shutdown(100);
      fs = await build(false, { streamUploadBytes: 1000, uploadRetryDelayMs: 60_000, uploadMaxRetryDelayMs: 60_000 });
      const said = vi.spyOn(console, 'error').mockImplementation(() => undefined);
      try {
        const fd = await fs.ops.create!(path, 0o644);
        await writeInParts(fd, [0, 3000, 5000]);
        const failure = await Promise.resolve(fs.ops.flush!(path, fd)).then(() => null, (e: unknown) => e as FsError);
        await fs.ops.release!(path, fd);
        expect(failure?.code).toBe('EIO');
        expect(failure?.message).toMatch(/another file named 'big\.nii' is on XNAT .*MD5.*not replaced.*kept in /);
        expect(x.uploads.map((u) => u.overwrite)).toEqual([false, false]);
        expect(stored()).toEqual(theirs);
        expect((await fs.shutdown(300)).map((l) => l.displayPath)).toEqual([path]);
        expect(stored()).toEqual(theirs);
      } finally {
        said.mockRestore();
      }
    });
  });

  it('rm -r of a folder costs one DELETE per file and no listing per file; the folder then goes', async () => {
    x = sampleArchive(50);
    await fs.shutdown(100);
    fs = await build();
    const dir = `${E}/scans/4-Ax_3D_T1/resources/DICOM/files`;
    const { names } = await fs.ops.readdir!(dir);
    const before = x.calls.length;
    for (const n of names.filter((n) => n.endsWith('.dcm'))) await fs.ops.unlink!(`${dir}/${n}`);
    const during = x.calls.slice(before);
    expect(during.filter((c) => c.startsWith('delete'))).toHaveLength(50);
    expect(during.filter((c) => !c.startsWith('delete'))).toEqual([]);
    expect((await fs.ops.readdir!(dir)).names).toEqual(['.', '..']);
    await fs.ops.rmdir!(dir); // files/ of an emptied resource: allowed, nothing to do
    await fs.ops.rmdir!(`${E}/scans/4-Ax_3D_T1/resources/DICOM`);
    expect((await fs.ops.readdir!(`${E}/scans/4-Ax_3D_T1/resources`)).names).toEqual(['.', '..']);
  });

  it('a refused upload (403) also fails the close of another handle that wrote during it, rather than report success for bytes that went nowhere', async () => {
    let refuse: (() => void) | null = null;
    x.uploadFile = async () => {
      await new Promise<void>((r) => (refuse = r));
      throw new XnatError('forbidden', 'no edit rights', 403);
    };
    const path = `${NOTES}/shared.txt`;
    const a = await fs.ops.create!(path, 0o644);
    const b = await fs.ops.open!(path, constants.O_WRONLY);
    await fs.ops.write!(path, a, Buffer.from('a;'), 2, 0);
    const first = errno(fs.ops.flush!(path, a));
    while (!refuse) await new Promise((r) => setTimeout(r, 2));
    await fs.ops.write!(path, b, Buffer.from('b;'), 2, 2);
    (refuse as () => void)();
    expect(await first).toBe('EACCES');
    await fs.ops.release!(path, a);
    x.uploadFile = async () => { throw new XnatError('forbidden', 'no edit rights', 403); };
    expect(await errno(fs.ops.flush!(path, b))).toBe('EACCES');
    await fs.ops.release!(path, b);
    expect(await readdir(fs.spoolDir)).toEqual([]);
  });

  it('an upload refused with 401 (the session is gone and logging in again fails) keeps the spool and retries it: the bytes are not dropped', async () => {
    const orig = x.uploadFile.bind(x);
    x.uploadFile = async () => { throw new XnatError('unauthorized', 'XNAT still refused the session right after logging in again', 401); };
    const path = `${NOTES}/after-expiry.txt`;
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('results'), 7, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EACCES');
    await fs.ops.release!(path, fd);
    expect(fs.uploader.pending().map((p) => p.displayPath)).toEqual([path]);
    x.uploadFile = orig;
    expect(await fs.shutdown(5000)).toEqual([]);
    fs = await build();
    expect(await readFile(path)).toEqual(Buffer.from('results'));
  });

  it('a file deleted while its upload is failing is not uploaded later by a background retry', async () => {
    const path = `${NOTES}/doomed.txt`;
    const orig = x.uploadFile.bind(x);
    let fail: (() => void) | null = null;
    x.uploadFile = async () => {
      await new Promise<void>((r) => (fail = r));
      throw new XnatError('server', 'HTTP 500', 500);
    };
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('temp'), 4, 0);
    const flushed = Promise.resolve(fs.ops.flush!(path, fd)).then(() => null, (e: unknown) => e);
    while (!fail) await new Promise((r) => setTimeout(r, 2));
    const unlinked = fs.ops.unlink!(path);
    await new Promise((r) => setTimeout(r, 10));
    x.uploadFile = orig;
    (fail as () => void)();
    await flushed;
    await unlinked;
    await fs.ops.release!(path, fd);
    await new Promise((r) => setTimeout(r, 200)); // several retry delays
    expect(fs.uploader.pending()).toEqual([]);
    const stored = x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files;
    expect(stored.has('doomed.txt')).toBe(false);
    expect(await readdir(fs.spoolDir)).toEqual([]);
  });

  it('the next mount takes up an upload XNAT refused as a duplicate without overwriting the file XNAT kept', async () => {
    const path = `${NOTES}/theirs.txt`;
    const fd = await fs.ops.create!(path, 0o644);
    x.addFile(expOwner, 'NOTES', 'theirs.txt', Buffer.from('someone else'));
    await fs.ops.write!(path, fd, Buffer.from('mine'), 4, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EIO');
    await fs.ops.release!(path, fd);
    expect((await fs.shutdown(100)).map((l) => l.displayPath)).toEqual([path]);
    fs = await build();
    expect(fs.resumedUploads).toEqual([path]);
    expect((await fs.shutdown(300)).map((l) => l.displayPath)).toEqual([path]);
    const stored = x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files;
    expect(stored.get('theirs.txt')?.toString()).toBe('someone else');
  });

  it('at unmount, an upload still under way when the wait ends is reported, and left for the next mount', async () => {
    x.uploadFile = () => new Promise(() => {}); // XNAT never answers
    const path = `${NOTES}/marker.done`;
    const fd = await fs.ops.create!(path, 0o644); // touch: the empty file goes up after close() returned
    await fs.ops.flush!(path, fd);
    await fs.ops.release!(path, fd);
    const left = await fs.shutdown(200);
    expect(left.map((l) => l.displayPath)).toEqual([path]);
    expect((await readdir(fs.spoolDir)).filter((n) => n.endsWith('.upload.json'))).toHaveLength(1);
    x.uploadFile = MemoryXnat.prototype.uploadFile.bind(x);
    fs = await build();
    expect(fs.resumedUploads).toEqual([path]);
    expect(await fs.shutdown(5000)).toEqual([]);
    const stored = x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files;
    expect(stored.get('marker.done')).toEqual(Buffer.alloc(0));
  });
  it('an upload after close() had returned (touch of a new file) that XNAT refuses is told on stderr, not dropped in silence', async () => {
    x.uploadFile = async () => { throw new XnatError('forbidden', 'no edit rights', 403); };
    const said = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const path = `${NOTES}/touched`;
      const fd = await fs.ops.create!(path, 0o644);
      await fs.ops.flush!(path, fd);
      await fs.ops.release!(path, fd);
      await fs.uploader.drain(500);
      await new Promise((r) => setTimeout(r, 10));
      expect(said.mock.calls.map((c) => String(c[0])).filter((l) => l.includes(path))).toEqual([expect.stringMatching(/^xnatfs: upload of .*touched.*403/)]);
    } finally {
      said.mockRestore();
    }
  });

  it('a file closed while a rename uploads it keeps its bytes when that upload fails', async () => {
    await fs.ops.mkdir!(`${E}/resources/RESULTS`, 0o755);
    const src = `${E}/resources/RESULTS/files/a.nii`;
    const fd = await fs.ops.create!(src, 0o644);
    await fs.ops.write!(src, fd, Buffer.from('only copy'), 9, 0);
    const orig = x.uploadFile.bind(x);
    let fail: (() => void) | null = null;
    x.uploadFile = async () => {
      await new Promise<void>((r) => (fail = r));
      throw new XnatError('server', 'HTTP 500', 500);
    };
    const renamed = errno(fs.ops.rename!(src, `${E}/resources/RESULTS/files/b.nii`));
    while (!fail) await new Promise((r) => setTimeout(r, 2));
    x.uploadFile = orig;
    // The writer closes its file meanwhile (mv by another program while it finishes).
    const closed = Promise.resolve(fs.ops.flush!(src, fd)).then(() => fs.ops.release!(src, fd));
    await new Promise((r) => setTimeout(r, 10));
    (fail as () => void)();
    expect(await renamed).toBe('EIO');
    await closed;
    expect(await fs.shutdown(5000)).toEqual([]);
    fs = await build();
    expect(await readFile(src)).toEqual(Buffer.from('only copy'));
  });
  it('writing again into a file whose upload is being retried takes it back first: no note is left for a spool being rewritten', async () => {
    const path = `${NOTES}/redo.txt`;
    const orig = x.uploadFile.bind(x);
    x.uploadFile = async () => { throw new XnatError('server', 'HTTP 503', 503); };
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('first'), 5, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EIO');
    await fs.ops.release!(path, fd);
    const notes = async (): Promise<string[]> => (await readdir(fs.spoolDir)).filter((n) => n.endsWith('.upload.json'));
    expect(await notes()).toHaveLength(1); // the retry's note: a killed mount's successor resumes it
    // Rewritten in place, same size: were the mount killed now, the note would send a torn copy.
    const fd2 = await fs.ops.open!(path, constants.O_WRONLY);
    await fs.ops.write!(path, fd2, Buffer.from('SEC'), 3, 0);
    expect(await notes()).toEqual([]);
    expect(fs.uploader.pending()).toEqual([]);
    x.uploadFile = orig;
    await fs.ops.write!(path, fd2, Buffer.from('ON'), 2, 3);
    await fs.ops.flush!(path, fd2);
    await fs.ops.release!(path, fd2);
    expect(await readFile(path)).toEqual(Buffer.from('SECON'));
  });

  it('a file written again while its background retry is landing is replaced, not refused as a duplicate of its own older copy', async () => {
    const path = `${NOTES}/again.txt`;
    const orig = x.uploadFile.bind(x);
    let calls = 0;
    let land: (() => void) | null = null;
    x.uploadFile = async (...a) => {
      calls++;
      if (calls === 1) throw new XnatError('server', 'HTTP 500', 500);
      if (calls === 2) await new Promise<void>((r) => (land = r));
      return orig(...a);
    };
    const fd = await fs.ops.create!(path, 0o644);
    await fs.ops.write!(path, fd, Buffer.from('v1'), 2, 0);
    expect(await errno(fs.ops.flush!(path, fd))).toBe('EIO');
    await fs.ops.release!(path, fd);
    while (!land) await new Promise((r) => setTimeout(r, 2)); // the background retry is under way
    const fd2 = await fs.ops.open!(path, constants.O_WRONLY);
    // The write waits for the retry's attempt under way (it must not send a spool being changed).
    const written = fs.ops.write!(path, fd2, Buffer.from('+v2'), 3, 2);
    await new Promise((r) => setTimeout(r, 10));
    (land as () => void)(); // the retry lands v1, then the flush uploads v1+v2
    await written;
    expect(await Promise.resolve(fs.ops.flush!(path, fd2)).then(() => null, (e: unknown) => e)).toBe(null);
    await fs.ops.release!(path, fd2);
    const stored = x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files;
    expect(stored.get('again.txt')?.toString()).toBe('v1+v2');
  });

  describe('a file that was new is never uploaded with overwrite: a "duplicates" answer is ours only with the same size and MD5', () => {
    const path = `${NOTES}/result.txt`;
    const stored = (): Buffer | undefined => x.resources.get('e/XNAT_E00001')!.find((r) => r.resource.label === 'NOTES')!.files.get('result.txt');
    const overwrites = () => x.uploads.filter((u) => u.overwrite);
    const quiet = () => vi.spyOn(console, 'error').mockImplementation(() => undefined);
    let said: ReturnType<typeof quiet>;
    const lines = (): string[] => said.mock.calls.map((c) => String(c[0]));
    beforeEach(() => {
      said = quiet();
    });
    afterEach(() => said.mockRestore());

    /** create, write, close: the errno close() answered, or 'ok'. */
    async function writeNew(text: string): Promise<string> {
      const fd = await fs.ops.create!(path, 0o644);
      await fs.ops.write!(path, fd, Buffer.from(text), Buffer.byteLength(text), 0);
      const code = await Promise.resolve(fs.ops.flush!(path, fd)).then(() => 'ok', (e: unknown) => (e as FsError).code);
      await fs.ops.release!(path, fd);
      return code;
    }
    async function until(cond: () => boolean, ms = 3000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error('timed out waiting');
        await new Promise((r) => setTimeout(r, 5));
      }
    }

    it('a first attempt that landed but whose answer was lost: the retry gets "duplicates", finds our size and MD5, and counts it as uploaded', async () => {
      x.loseAnswers = 1;
      expect(await writeNew('our results')).toBe('EIO');
      expect(stored()?.toString()).toBe('our results'); // it did land
      // The line comes after the retry leaves pending(), once its note and spool file are gone.
      await until(() => lines().some((l) => /uploaded .*result\.txt after 1 background retry/.test(l)));
      expect(fs.uploader.pending()).toEqual([]);
      expect(x.uploads).toEqual([{ path: 'result.txt', overwrite: false }, { path: 'result.txt', overwrite: false }]);
      expect(x.calls).toContain('files e/XNAT_E00001 NOTES'); // the comparison
      expect(lines()).toContainEqual(expect.stringMatching(/uploaded .*result\.txt after 1 background retry/));
      expect(await readdir(fs.spoolDir)).toEqual([]);
      expect(await fs.shutdown(1000)).toEqual([]);
      expect(stored()?.toString()).toBe('our results');
    });

    it('a version whose answer was lost, then written again before its retry: the new version replaces our own earlier copy', async () => {
      // No background retry comes in between: the second close meets the first version on XNAT.
      await fs.shutdown(1000);
      fs = await build(false, { uploadRetryDelayMs: 60_000, uploadMaxRetryDelayMs: 60_000 });
      x.loseAnswers = 1;
      expect(await writeNew('first version')).toBe('EIO');
      expect(stored()?.toString()).toBe('first version'); // it landed, unanswered
      expect(await writeNew('second, longer version')).toBe('ok');
      expect(stored()?.toString()).toBe('second, longer version');
      expect(fs.uploader.pending()).toEqual([]);
      expect(lines().filter((l) => /not replaced|not uploaded/.test(l))).toEqual([]);
      // A third version goes as any rewrite of a file of ours that landed.
      expect(await writeNew('third')).toBe('ok');
      expect(stored()?.toString()).toBe('third');
      expect(await fs.shutdown(1000)).toEqual([]);
    });

    it("someone else's file stored under that name before the retry is not overwritten: ours stays in the spool, one line says so, unmount reports it", async () => {
      const orig = x.uploadFile.bind(x);
      let first = true;
      x.uploadFile = async (...a) => {
        if (!first) return orig(...a);
        first = false;
        x.addFile(expOwner, 'NOTES', 'result.txt', Buffer.from('them')); // another client, meanwhile
        throw new XnatError('server', 'HTTP 503', 503);
      };
      expect(await writeNew('ours')).toBe('EIO');
      await until(() => x.uploads.length >= 3); // several background retries
      expect(stored()?.toString()).toBe('them');
      expect(overwrites()).toEqual([]);
      const told = lines().filter((l) => l.includes('result.txt'));
      expect(told).toHaveLength(1);
      const [spooled] = fs.uploader.pending().map((p) => p.spoolPath);
      expect(told[0]).toMatch(/^xnatfs: \S*result\.txt not uploaded: another file named 'result\.txt' is on XNAT .*MD5 \w+, ours \w+.*not replaced.*kept in /);
      expect(told[0]).toContain(spooled);
      const left = await fs.shutdown(300);
      expect(left.map((l) => [l.displayPath, l.spoolPath])).toEqual([[path, spooled]]);
      expect(left[0]!.lastError).toMatch(/another file named/);
      const { readFile: read } = await import('node:fs/promises');
      expect(await read(spooled!, 'utf8')).toBe('ours');
      expect(stored()?.toString()).toBe('them');
    });

    it('across a remount: the next mount resumes without overwrite and finds our copy that landed unanswered', async () => {
      const orig = x.uploadFile.bind(x);
      x.loseAnswers = 1;
      let calls = 0;
      x.uploadFile = async (...a) => {
        if (calls++ === 0) return orig(...a); // lands, answer lost
        throw new XnatError('server', 'HTTP 503', 503);
      };
      expect(await writeNew('our results')).toBe('EIO');
      expect((await fs.shutdown(100)).map((l) => l.displayPath)).toEqual([path]);
      x.uploadFile = orig;
      fs = await build();
      expect(fs.resumedUploads).toEqual([path]);
      expect(await fs.shutdown(5000)).toEqual([]);
      expect(overwrites()).toEqual([]);
      expect(stored()?.toString()).toBe('our results');
      // Nothing left: the emptied spool folder is removed at shutdown.
      await expect(readdir(fs.spoolDir)).rejects.toMatchObject({ code: 'ENOENT' });
    });

    it('across a remount: a version that landed unanswered, then a newer one left in the spool: the next mount replaces the older one', async () => {
      await fs.shutdown(1000);
      fs = await build(false, { uploadRetryDelayMs: 60_000, uploadMaxRetryDelayMs: 60_000 });
      const orig = x.uploadFile.bind(x);
      x.loseAnswers = 1;
      expect(await writeNew('first version')).toBe('EIO'); // landed, answer lost
      x.uploadFile = async () => { throw new XnatError('server', 'HTTP 503', 503); };
      expect(await writeNew('second, longer version')).toBe('EIO');
      expect((await fs.shutdown(100)).map((l) => l.displayPath)).toEqual([path]);
      expect(stored()?.toString()).toBe('first version');
      x.uploadFile = orig;
      fs = await build();
      expect(fs.resumedUploads).toEqual([path]);
      expect(await fs.shutdown(5000)).toEqual([]);
      expect(stored()?.toString()).toBe('second, longer version');
    });

    it('across a remount: an upload still under way at unmount that landed unanswered is found by the next mount, not overwritten', async () => {
      const orig = x.uploadFile.bind(x);
      x.uploadFile = async (...a) => {
        await orig(...a);
        return new Promise(() => {}); // stored, and the answer never comes
      };
      const fd = await fs.ops.create!(path, 0o644); // touch: uploaded after close() returned
      await fs.ops.flush!(path, fd);
      await fs.ops.release!(path, fd);
      expect((await fs.shutdown(200)).map((l) => l.displayPath)).toEqual([path]);
      x.uploadFile = orig;
      fs = await build();
      expect(fs.resumedUploads).toEqual([path]);
      expect(await fs.shutdown(5000)).toEqual([]);
      expect(overwrites()).toEqual([]);
      expect(stored()).toEqual(Buffer.alloc(0));
    });

    it("across a remount: someone else's file stored between the mounts is not overwritten by the resumed upload", async () => {
      x.uploadFile = async (_o, _r, p, options) => {
        x.uploads.push({ path: p, overwrite: options.overwrite });
        throw new XnatError('server', 'HTTP 503', 503);
      };
      expect(await writeNew('ours')).toBe('EIO');
      expect((await fs.shutdown(100)).map((l) => l.displayPath)).toEqual([path]);
      x.addFile(expOwner, 'NOTES', 'result.txt', Buffer.from('them'));
      x.uploadFile = MemoryXnat.prototype.uploadFile.bind(x);
      fs = await build();
      expect(fs.resumedUploads).toEqual([path]);
      const left = await fs.shutdown(300);
      expect(left.map((l) => l.displayPath)).toEqual([path]);
      expect(left[0]!.lastError).toMatch(/another file named 'result\.txt' is on XNAT/);
      expect(lines().filter((l) => l.includes('not uploaded: another file'))).toHaveLength(1);
      expect(overwrites()).toEqual([]);
      expect(stored()?.toString()).toBe('them');
    });

    it('on a server that lists no digests, XNAT\'s copy of our size is fetched and compared: ours counts as uploaded', async () => {
      x.digests = false;
      x.loseAnswers = 1;
      expect(await writeNew('our results')).toBe('EIO');
      await until(() => lines().some((l) => /uploaded .*result\.txt after 1 background retry/.test(l)));
      expect(x.calls).toContain('get result.txt'); // no MD5 listed: the comparison fetched it
      expect(overwrites()).toEqual([]);
      expect(await fs.shutdown(1000)).toEqual([]);
      expect(stored()?.toString()).toBe('our results');
    });

    it('on a server that lists no digests, someone else\'s file of the same size is fetched, found different, and not overwritten', async () => {
      x.digests = false;
      const fd = await fs.ops.create!(path, 0o644); // new when created…
      await fs.ops.write!(path, fd, Buffer.from('ours results!'), 13, 0);
      x.addFile(expOwner, 'NOTES', 'result.txt', Buffer.from('THEIR results')); // …then someone stores as many bytes
      expect(await errno(fs.ops.flush!(path, fd))).toBe('EIO');
      await fs.ops.release!(path, fd);
      const left = await fs.shutdown(300);
      expect(left.map((l) => l.displayPath)).toEqual([path]);
      expect(left[0]!.lastError).toMatch(/MD5 [0-9a-f]{32}, ours [0-9a-f]{32}/);
      expect(overwrites()).toEqual([]);
      expect(stored()?.toString()).toBe('THEIR results');
    });

    it('a file that replaced one on XNAT is still retried with overwrite', async () => {
      x.addFile(expOwner, 'NOTES', 'result.txt', Buffer.from('old version'));
      x.loseAnswers = 1;
      expect(await writeNew('new version')).toBe('EIO');
      expect(await fs.shutdown(5000)).toEqual([]);
      expect(x.uploads.map((u) => u.overwrite)).toEqual([true, true]);
      expect(stored()?.toString()).toBe('new version');
    });
  });
});
