// The real command line, as a user runs it: `node dist/cli/main.js …` in child processes against
// an emulator running in this process. The mounts are served by the children, but this process
// serves their HTTP requests: nothing here may block the event loop (no *Sync, no execSync).
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, cp, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { DEMO_USERS, startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { isMounted, unmountPath } from '../../src/fs/mountpoint.js';
import { fuseMountsUnder, inCI, requireFuse, run, tempMountpoint, type RunResult, type TempMountpoint, testUser } from '../helpers/fuse.js';
import { repoRoot } from '../helpers/transpile.js';
import { cacheDirFor } from '../../src/cli/mount-command.js';
import { normalizeBaseUrl } from '../../src/xnat/client.js';

const MAIN = join(repoRoot, 'dist/cli/main.js');
const VERSION = '0.1.0';
const NOTES = 'projects/DEMO/experiments/SUBJ01_MR1/resources/NOTES/files';
// A user whose password is distinctive enough to search the output for.
const ALICE = { name: 'alice', password: 'Al1ce-s3cret-Pa55w0rd', projects: '*' as const };

interface User { uid: number; gid: number }

/** A running `xnatfs …` child with its output collected. */
interface Cli {
  child: ChildProcess;
  out: { stdout: string; stderr: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
}

requireFuse()('xnatfs command line (dist/cli/main.js)', () => {
  let emulator: RunningEmulator;
  let work: DirectoryResult;
  let home: string;
  let mp: TempMountpoint;
  const children: Cli[] = [];
  const extraMountpoints: string[] = [];

  /** Environment for a child: nothing inherited that could carry credentials or a ~/.netrc. */
  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    ...extra,
  });

  /** Run xnatfs to completion (for commands that exit by themselves). */
  const xnatfs = (args: string[], extra: Record<string, string> = {}, timeout = 60_000): Promise<RunResult> =>
    run(process.execPath, [MAIN, ...args], { env: env(extra), cwd: home, timeout });

  /**
   * Start a long-running xnatfs (mount); killed in afterEach if still running. With `as`, run
   * as that user (setpriv) with exactly `o.env` as environment.
   */
  const start = (args: string[], extra: Record<string, string> = {}, o: { as?: User; main?: string; env?: NodeJS.ProcessEnv } = {}): Cli => {
    const node = [process.execPath, o.main ?? MAIN, ...args];
    const [cmd, ...argv] = o.as ? ['setpriv', `--reuid=${o.as.uid}`, `--regid=${o.as.gid}`, '--clear-groups', ...node] : node;
    const child = spawn(cmd!, argv, { env: o.env ?? env(extra), cwd: o.as ? '/' : home, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = { stdout: '', stderr: '' };
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
    let done = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
      child.on('close', (code, signal) => {
        done = true;
        res({ code, signal });
      }),
    );
    const cli = { child, out, exited, hasExited: () => done };
    children.push(cli);
    return cli;
  };

  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  /** Wait until `ls MP/projects` lists DEMO (as `as`, when given); fails early if the child exits. */
  const waitMounted = async (cli: Cli, mountpoint: string, as?: User, timeoutMs = 45_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    let last: RunResult | undefined;
    while (Date.now() < deadline) {
      if (cli.hasExited()) {
        const { code, signal } = await cli.exited;
        throw new Error(`xnatfs mount exited (${code ?? signal}) before mounting:\n${cli.out.stderr}${cli.out.stdout}`);
      }
      if (await isMounted(mountpoint)) {
        last = as
          ? await run('setpriv', [`--reuid=${as.uid}`, `--regid=${as.gid}`, '--clear-groups', 'ls', join(mountpoint, 'projects')], { cwd: '/' })
          : await run('ls', [join(mountpoint, 'projects')]);
        if (last.code === 0 && last.stdout.includes('DEMO')) return last.stdout;
      }
      await sleep(200);
    }
    throw new Error(`${mountpoint} not mounted after ${timeoutMs} ms (last ls: ${JSON.stringify(last)}); stderr:\n${cli.out.stderr}`);
  };

  /** The child's exit, or a failure naming what it printed if it does not exit in time. */
  const exitOf = async (cli: Cli, timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`xnatfs did not exit within ${timeoutMs} ms; stderr:\n${cli.out.stderr}`)), timeoutMs);
    });
    try {
      return await Promise.race([cli.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  const basicAuth = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  beforeAll(async () => {
    // Build the CLI as it stands now: dist/ may be stale or missing.
    const build = await run('npm', ['run', 'build'], { cwd: repoRoot, timeout: 240_000 });
    expect(build.code, `npm run build failed:\n${build.stdout}\n${build.stderr}`).toBe(0);
    emulator = await startEmulator({ users: [...DEMO_USERS, ALICE] });
  }, 300_000);

  afterAll(async () => {
    await emulator?.close();
  });

  beforeEach(async () => {
    work = await tmpDir({ prefix: 'xnatfs-cli-', unsafeCleanup: true });
    home = join(work.path, 'home');
    await mkdir(home, { mode: 0o700 });
    mp = await tempMountpoint();
  });

  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (!c.hasExited()) {
        c.child.kill('SIGKILL');
        await c.exited;
      }
    }
    for (const m of [mp.path, ...extraMountpoints.splice(0)]) await unmountPath(m).catch(() => undefined);
    await mp.cleanup();
    await work.cleanup();
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  // ── 1. help, version, usage errors ──────────────────────────────────────────────────────

  it('--help, mount --help and --version exit 0 with sensible text', async () => {
    const help = await xnatfs(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^xnatfs — mount an XNAT/);
    for (const cmd of ['mount URL MOUNTPOINT', 'unmount MOUNTPOINT', 'demo', 'emulator']) expect(help.stdout).toContain(cmd);
    expect(help.stderr).toBe('');

    const mountHelp = await xnatfs(['mount', '--help']);
    expect(mountHelp.code).toBe(0);
    expect(mountHelp.stdout).toMatch(/^Usage: xnatfs mount URL MOUNTPOINT/);
    for (const opt of ['XNAT_USER', 'XNAT_PASS', '.netrc', '--read-only', '--cache-dir', '--allow-other']) expect(mountHelp.stdout).toContain(opt);

    expect(help.stdout).toContain('demo [MOUNTPOINT] [--once] [--port N]');

    const demoHelp = await xnatfs(['demo', '--help']);
    expect(demoHelp.code).toBe(0);
    expect(demoHelp.stdout).toMatch(/^Usage: xnatfs demo/);

    const unmountHelp = await xnatfs(['unmount', '--help']);
    expect(unmountHelp.code).toBe(0);
    expect(unmountHelp.stdout).toMatch(/^Usage: xnatfs unmount MOUNTPOINT/);
    expect(unmountHelp.stdout).toContain('Exit status');
    expect(unmountHelp.stderr).toBe('');

    const version = await xnatfs(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`${VERSION}\n`);
  });

  it('an unknown command exits 2 with the usage', async () => {
    const r = await xnatfs(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^xnatfs: unknown command 'frobnicate'\n/);
    expect(r.stderr).toContain('Usage:');
    expect(r.stdout).toBe('');
  });

  it('refuses --password on the command line, and mounts nothing', async () => {
    for (const args of [['--password', 'hunter2-on-argv'], ['--password=hunter2-on-argv']]) {
      const r = await xnatfs(['mount', emulator.url, mp.path, ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/password on the command line/);
      expect(r.stderr).toMatch(/XNAT_PASS/);
      expect(r.stderr + r.stdout).not.toContain('hunter2-on-argv');
    }
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  // ── 2. credentials ──────────────────────────────────────────────────────────────────────

  it('XNAT_USER/XNAT_PASS: mounts, ls works, SIGTERM unmounts and exits 0, logs out', async () => {
    emulator.resetRequests();
    // --debug too: not even the verbose log may show the password.
    const m = start(['mount', emulator.url, mp.path, '--debug'], { XNAT_USER: ALICE.name, XNAT_PASS: ALICE.password });
    const projects = await waitMounted(m, mp.path);
    expect(projects.split('\n').filter(Boolean)).toEqual(['DEMO', 'OPEN', 'PRIVATE']);
    const entry = (await fuseMountsUnder(mp.path))[0];
    expect(entry).toMatchObject({ fsType: 'fuse.xnatfs', source: `xnatfs#${emulator.url}` });
    expect(m.out.stderr).toContain(`mounted ${emulator.url} at ${mp.path}`);
    // the default cache dir is under $HOME, private
    const cache = await stat(join(home, '.cache/xnatfs'));
    expect(cache.mode & 0o077).toBe(0);

    m.child.kill('SIGTERM');
    expect(await exitOf(m)).toEqual({ code: 0, signal: null });
    expect(m.out.stderr).toMatch(/SIGTERM: unmounting/);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
    expect(emulator.requests().some((r) => r.method === 'DELETE' && r.url.startsWith('/data/JSESSION'))).toBe(true);
    expect(m.out.stderr + m.out.stdout).not.toContain(ALICE.password);
  });

  it('after a large read (MD5 on a worker thread) and a write into the default cache, SIGTERM still exits 0', async () => {
    const big = Buffer.alloc(9 * 1024 * 1024, 7);
    await emulator.addFile({ project: 'DEMO', resource: 'BIG', path: 'big.bin', data: big });
    const m = start(['mount', emulator.url, mp.path], { XNAT_USER: ALICE.name, XNAT_PASS: ALICE.password });
    await waitMounted(m, mp.path);
    const cmp = await run('cmp', ['-n', String(big.length), join(mp.path, 'projects/DEMO/resources/BIG/files/big.bin'), '/dev/zero']);
    // not zeros: the first differing byte is the first one
    expect(cmp.stdout).toMatch(/differ: byte 1,/);
    const wc = await run('sh', ['-c', `wc -c < '${join(mp.path, 'projects/DEMO/resources/BIG/files/big.bin')}'`]);
    expect(wc.stdout.trim()).toBe(String(big.length));
    const src = join(work.path, 'result.txt');
    await writeFile(src, 'written through the default cache dir\n');
    const cp = await run('cp', [src, join(mp.path, 'projects/DEMO/resources/BIG/files/result.txt')]);
    expect(cp.code, cp.stderr).toBe(0);
    const started = Date.now();
    m.child.kill('SIGTERM');
    expect(await exitOf(m)).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  it('SIGTERM while a program is writing: new writes get EROFS, the writer finishes, its file is uploaded, exit 0', async () => {
    const m = start(['mount', emulator.url, mp.path, '--upload-wait', '30'], { XNAT_USER: ALICE.name, XNAT_PASS: ALICE.password });
    await waitMounted(m, mp.path);
    const target = join(mp.path, NOTES, 'slow-writer.txt');
    // a writer that holds its file open across the signal
    const writer = run('sh', ['-c', `exec 3>'${target}'; echo first >&3; sleep 2; echo second >&3; exec 3>&-`]);
    await sleep(700);
    m.child.kill('SIGTERM');
    await sleep(400);
    const late = await run('sh', ['-c', `echo late > '${join(mp.path, NOTES, 'late.txt')}'`]);
    expect(late.stderr).toMatch(/Read-only file system/);
    expect((await writer).code).toBe(0);
    expect(await exitOf(m, 40_000)).toEqual({ code: 0, signal: null });
    const stored = emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', 'slow-writer.txt');
    expect(stored && (await readFile(stored, 'utf8'))).toBe('first\nsecond\n');
    expect(emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', 'late.txt')).toBeNull();
  });

  it('a netrc file (NETRC=…) with mode 0600 works', async () => {
    const netrc = join(work.path, 'netrc');
    await writeFile(netrc, `machine 127.0.0.1 login ${ALICE.name} password ${ALICE.password}\n`, { mode: 0o600 });
    await chmod(netrc, 0o600);
    const m = start(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache')], { NETRC: netrc });
    expect(await waitMounted(m, mp.path)).toContain('PRIVATE');
    m.child.kill('SIGTERM');
    expect((await exitOf(m)).code).toBe(0);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
    expect(m.out.stderr + m.out.stdout).not.toContain(ALICE.password);
  });

  it('a netrc file readable by others (0644) is refused with chmod 600 advice, nothing mounted', async () => {
    const netrc = join(work.path, 'netrc');
    await writeFile(netrc, 'machine 127.0.0.1 login demo password demo\n');
    await chmod(netrc, 0o644);
    const r = await xnatfs(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache')], { NETRC: netrc });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stderr).toContain(`chmod 600 ${netrc}`);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  it('an alias token works as user and password', async () => {
    const res = await fetch(`${emulator.url}/data/services/tokens/issue`, { headers: { Authorization: basicAuth('demo', 'demo') } });
    expect(res.status).toBe(200);
    const token = (await res.json()) as { alias: string; secret: string };
    expect(token.alias).toBeTruthy();
    expect(token.secret.length).toBeGreaterThan(16);
    const m = start(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache'), '--debug'], {
      XNAT_USER: token.alias,
      XNAT_PASS: token.secret,
    });
    expect((await waitMounted(m, mp.path)).split('\n').filter(Boolean)).toEqual(['DEMO', 'OPEN', 'PRIVATE']);
    expect((await run('ls', [join(mp.path, NOTES)])).stdout).toContain('hash#1.txt');
    m.child.kill('SIGTERM');
    expect((await exitOf(m)).code).toBe(0);
    expect(m.out.stderr + m.out.stdout).not.toContain(token.secret);
  });

  it('a wrong password: one line naming server and user, non-zero exit, nothing mounted', async () => {
    const wrong = 'Wr0ng-Pa55-zq9';
    const r = await xnatfs(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache')], { XNAT_USER: 'demo', XNAT_PASS: wrong });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull(); // exited, not killed by run()'s timeout
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^xnatfs: /);
    expect(lines[0]).toContain(emulator.url);
    expect(lines[0]).toContain("'demo'");
    expect(r.stdout).toBe('');
    expect(r.stderr + r.stdout).not.toContain(wrong);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  it('an invalid XNAT_JSESSION: one line saying how to recover, non-zero exit, nothing mounted', async () => {
    const r = await xnatfs(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache')], { XNAT_JSESSION: 'B0GUS5E55104' });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `xnatfs: the XNAT session given by XNAT_JSESSION has expired or is not valid at ${emulator.url}: log in again in the browser and pass the new JSESSIONID, or use XNAT_USER/XNAT_PASS or ~/.netrc\n`,
    );
    expect(r.stdout).toBe('');
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  // ── 3. xnatfs unmount ───────────────────────────────────────────────────────────────────

  it('`xnatfs unmount MP` from another process makes the mounting process exit 0 by itself', async () => {
    const m = start(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache')], { XNAT_USER: 'demo', XNAT_PASS: 'demo' });
    await waitMounted(m, mp.path);
    const u = await xnatfs(['unmount', mp.path]);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stderr).toBe(''); // a live mount's process finishes and reports by itself
    expect(await isMounted(mp.path)).toBe(false);
    const started = Date.now();
    expect(await exitOf(m, 15_000)).toEqual({ code: 0, signal: null });
    console.info(`mount process exited ${Date.now() - started} ms after xnatfs unmount`);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  it('`xnatfs unmount` of a path where nothing is mounted: one line, exit 4', async () => {
    const missing = join(mp.path, 'nope');
    const a = await xnatfs(['unmount', missing]);
    expect(a.code).toBe(4);
    expect(a.stderr).toBe(`xnatfs: nothing is mounted at ${missing} (it does not exist): check the path\n`);
    const b = await xnatfs(['unmount', mp.path]);
    expect(b.code).toBe(4);
    expect(b.stderr).toBe(`xnatfs: nothing is mounted at ${mp.path}: check the path\n`);
  });

  it('a signal after `xnatfs unmount`, while uploads are still waited for, says so; a second one exits', async () => {
    emulator.injectFaults({ match: /\/files\/never-lands\.txt/, method: 'PUT', count: 1000, kind: 'status500' });
    try {
      // A cache of its own: the upload it leaves must not be resumed by the other tests' mounts.
      const m = start(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache-signal'), '--upload-wait', '60'], { XNAT_USER: 'demo', XNAT_PASS: 'demo' });
      await waitMounted(m, mp.path);
      const cp = await run('sh', ['-c', `echo data > '${join(mp.path, NOTES, 'never-lands.txt')}'`]);
      expect(cp.code).toBe(0); // a shell redirection never sees the close error (documented)
      expect((await xnatfs(['unmount', mp.path])).code).toBe(0);
      while (!m.out.stderr.includes('pending upload(s)')) await new Promise((r) => setTimeout(r, 50));
      m.child.kill('SIGTERM');
      while (!m.out.stderr.includes('SIGTERM:')) await new Promise((r) => setTimeout(r, 50));
      expect(m.out.stderr).toContain(`xnatfs: SIGTERM: ${mp.path} is already unmounted; still waiting for pending uploads; another SIGTERM exits now and leaves them to the next mount`);
      m.child.kill('SIGTERM');
      expect((await exitOf(m)).code).toBe(130);
    } finally {
      emulator.clearFaults();
    }
  });

  it('a second Ctrl-C while a close() waits for its upload notes that upload first: the next mount resumes it', async () => {
    emulator.injectFaults({ match: /\/files\/hung-upload\.txt/, method: 'PUT', count: 1, kind: 'hang' });
    const cache = join(work.path, 'cache-second-signal');
    try {
      const m = start(['mount', emulator.url, mp.path, '--cache-dir', cache], { XNAT_USER: 'demo', XNAT_PASS: 'demo' });
      await waitMounted(m, mp.path);
      const src = join(work.path, 'hung-upload.txt');
      await writeFile(src, 'results of a long job\n');
      const copying = run('cp', [src, join(mp.path, NOTES, 'hung-upload.txt')]); // its close() waits for the hung PUT
      while (!emulator.requests().some((r) => r.method === 'PUT' && r.url.includes('hung-upload.txt'))) await new Promise((r) => setTimeout(r, 20));
      m.child.kill('SIGINT');
      while (!m.out.stderr.includes('SIGINT:')) await new Promise((r) => setTimeout(r, 20));
      m.child.kill('SIGINT');
      expect((await exitOf(m)).code).toBe(130);
      expect((await copying).code).not.toBe(0); // the mount went away under it
    } finally {
      emulator.clearFaults();
    }
    const again = start(['mount', emulator.url, mp.path, '--cache-dir', cache], { XNAT_USER: 'demo', XNAT_PASS: 'demo' });
    await waitMounted(again, mp.path);
    const until = Date.now() + 15_000;
    while (!emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', 'hung-upload.txt') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(again.out.stderr).toContain('left unfinished by an earlier mount');
    expect(await readFile(emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', 'hung-upload.txt')!, 'utf8')).toBe('results of a long job\n');
    again.child.kill('SIGINT');
    expect((await exitOf(again)).code).toBe(0);
  });

  it('`xnatfs unmount` clears a stale xnatfs mount (its process was killed)', async () => {
    const m = start(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache')], { XNAT_USER: 'demo', XNAT_PASS: 'demo' });
    await waitMounted(m, mp.path);
    m.child.kill('SIGKILL');
    await m.exited;
    const u = await xnatfs(['unmount', mp.path]);
    expect(u.code, u.stderr).toBe(0);
    expect(await isMounted(mp.path)).toBe(false);
    // Said once, since no process is left to finish (or report) its uploads.
    expect(u.stderr).toMatch(/^xnatfs: the process that mounted .* had died .*resumes them\n$/);
  });

  it.skipIf(process.getuid?.() !== 0)('`xnatfs unmount` as root refuses a mount xnatfs did not make', async () => {
    const r = await run('mount', ['-t', 'tmpfs', 'xnatfs-test-tmpfs', mp.path]);
    expect(r.code, r.stderr).toBe(0);
    try {
      const u = await xnatfs(['unmount', mp.path]);
      expect(u.code).toBe(1);
      expect(u.stderr).toBe(`xnatfs: ${mp.path} is a tmpfs mount, not one made by xnatfs: refusing to unmount it (use umount if you mean it)\n`);
      expect(await isMounted(mp.path)).toBe(true);
    } finally {
      await run('umount', [mp.path]);
    }
  });

  it('a mount detached lazily exits even when another mount is made at the same path', async () => {
    const creds = { XNAT_USER: 'demo', XNAT_PASS: 'demo' };
    const first = start(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache-1')], creds);
    await waitMounted(first, mp.path);
    const detach = await run('fusermount', ['-uz', mp.path]); // a lazy unmount, as by hand
    expect(detach.code, detach.stderr).toBe(0);
    // A second mount at once: within the first one's 1 s watch, so the path is mounted again.
    const second = start(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache-2')], creds);
    expect(await waitMounted(second, mp.path)).toContain('DEMO');
    expect(await exitOf(first, 15_000)).toEqual({ code: 0, signal: null });
    expect(second.hasExited()).toBe(false);
    expect(await fuseMountsUnder(mp.path)).toHaveLength(1);
    second.child.kill('SIGTERM');
    expect(await exitOf(second, 15_000)).toEqual({ code: 0, signal: null });
  });

  it.skipIf(process.getuid?.() !== 0)('a mount whose FUSE connection is aborted clears the dead mount and exits', async () => {
    // Aborting goes through fusectl (root); mount it where the system has not, for this test.
    const fusectl = '/sys/fs/fuse/connections';
    const mountedFusectl = (await run('mountpoint', ['-q', fusectl])).code !== 0;
    if (mountedFusectl) {
      const r = await run('mount', ['-t', 'fusectl', 'none', fusectl]);
      expect(r.code, r.stderr).toBe(0);
    }
    try {
      // --ttl 1: the kernel keeps the root's attributes for 1 s, after which a stat sees the abort.
      const m = start(['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache'), '--ttl', '1'], { XNAT_USER: 'demo', XNAT_PASS: 'demo' });
      await waitMounted(m, mp.path);
      const info = await readFile('/proc/self/mountinfo', 'utf8');
      const dev = info.split('\n').find((l) => l.split(' ')[4] === mp.path)?.split(' ')[2];
      expect(dev).toMatch(/^0:\d+$/);
      await writeFile(`${fusectl}/${dev!.split(':')[1]}/abort`, '1');
      expect(await exitOf(m, 15_000)).toEqual({ code: 0, signal: null });
      expect(m.out.stderr).toMatch(/connection .* ended/);
      expect(await fuseMountsUnder(mp.path)).toEqual([]);
    } finally {
      if (mountedFusectl) await run('umount', [fusectl]);
    }
  });

  // ── 4. stale mount ──────────────────────────────────────────────────────────────────────

  it('after kill -9 the mount is stale; a new xnatfs mount clears it and works', async () => {
    const creds = { XNAT_USER: 'demo', XNAT_PASS: 'demo' };
    const args = ['mount', emulator.url, mp.path, '--cache-dir', join(work.path, 'cache')];
    const first = start(args, creds);
    await waitMounted(first, mp.path);
    first.child.kill('SIGKILL');
    expect((await exitOf(first)).signal).toBe('SIGKILL');

    const st = await run('stat', [mp.path]);
    expect(st.code).not.toBe(0);
    expect(st.stderr).toMatch(/Transport endpoint is not connected/);

    const second = start(args, creds);
    expect(await waitMounted(second, mp.path)).toContain('DEMO');
    expect(await fuseMountsUnder(mp.path)).toHaveLength(1);
    expect((await run('cat', [join(mp.path, NOTES, 'a+b.txt')])).code).toBe(0);
    second.child.kill('SIGTERM');
    expect((await exitOf(second)).code).toBe(0);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  it('a file a killed mount left half written: the next mount names the folder it is kept in', async () => {
    // What a batch job killed at its wall time leaves: a spool file without a note, in the
    // folder of a process that is gone.
    const cacheBase = join(work.path, 'cache');
    const dead = spawn('true');
    await new Promise((r) => dead.on('close', r));
    const orphan = join(cacheDirFor(cacheBase, normalizeBaseUrl(emulator.url).baseUrl), 'spool', String(dead.pid));
    await mkdir(orphan, { recursive: true, mode: 0o700 });
    await writeFile(join(orphan, `spool--${dead.pid}-abcdefgh--result.nii`), 'half a NIfTI');

    const m = start(['mount', emulator.url, mp.path, '--cache-dir', cacheBase], { XNAT_USER: 'demo', XNAT_PASS: 'demo' });
    await waitMounted(m, mp.path);
    const line = m.out.stderr.split('\n').find((l) => l.includes('partly written'));
    expect(line, m.out.stderr).toBeDefined();
    expect(line).toContain(`kept in ${orphan};`);
    expect(line).toContain('1 partly written file ');
    m.child.kill('SIGTERM');
    expect((await exitOf(m)).code).toBe(0);
    // still there: only the user knows whether it is worth anything
    expect(await readFile(join(orphan, `spool--${dead.pid}-abcdefgh--result.nii`), 'utf8')).toBe('half a NIfTI');
  });

  // ── 5. mount point errors ───────────────────────────────────────────────────────────────

  it('a missing or non-empty mount point: one clear line, non-zero exit, nothing mounted', async () => {
    const creds = { XNAT_USER: 'demo', XNAT_PASS: 'demo' };
    const missing = join(mp.path, 'nope');
    const a = await xnatfs(['mount', emulator.url, missing], creds);
    expect(a.code).toBe(1);
    expect(a.stderr).toBe(`xnatfs: mount point ${missing} does not exist: create it with mkdir -p ${missing}\n`);

    // reported before any login: no credentials needed to learn the directory is wrong
    const noCreds = await xnatfs(['mount', emulator.url, missing]);
    expect(noCreds.code).toBe(1);
    expect(noCreds.stderr).toMatch(/does not exist/);

    await writeFile(join(mp.path, 'data.txt'), 'x');
    const b = await xnatfs(['mount', emulator.url, mp.path], creds);
    expect(b.code).toBe(1);
    expect(b.stderr.trim().split('\n')).toHaveLength(1);
    expect(b.stderr).toMatch(new RegExp(`^xnatfs: mount point ${mp.path} is not empty`));

    const c = await xnatfs(['mount', emulator.url, join(mp.path, 'data.txt')], creds);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/is not a directory/);
    expect(c.stderr.trim().split('\n')).toHaveLength(1);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
    await run('rm', [join(mp.path, 'data.txt')]);
  });

  it('a cache folder that cannot be made: one line naming it and --cache-dir, before any login', async () => {
    const blocked = join(work.path, 'a-file');
    await writeFile(blocked, 'x');
    const r = await xnatfs(['mount', emulator.url, mp.path, '--cache-dir', join(blocked, 'cache')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^xnatfs: cannot use the cache folder ${blocked}/cache/\\S+ \\(ENOTDIR\\): choose a writable one with --cache-dir DIR, or set XDG_CACHE_HOME\n$`));
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  it('TMPDIR naming a folder that does not exist (an ended job\'s): the mount works and writes, it needs no TMPDIR', async () => {
    // xnatfs keeps everything under the cache folder; a temp-file module read TMPDIR when it was
    // loaded and the mount died with a stack trace instead.
    const creds = { XNAT_USER: 'demo', XNAT_PASS: 'demo', TMPDIR: join(work.path, 'job-gone/tmp') };
    const m = start(['mount', emulator.url, mp.path], creds);
    await waitMounted(m, mp.path);
    const src = join(work.path, 'result.txt');
    await writeFile(src, 'result\n');
    expect((await run('cp', [src, join(mp.path, NOTES)])).code).toBe(0);
    m.child.kill('SIGTERM');
    expect(await exitOf(m)).toEqual({ code: 0, signal: null });
    expect(m.out.stderr).not.toMatch(/ENOENT|node:|\n\s+at /);
    expect(emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', 'result.txt')).not.toBeNull();
    const missing = await xnatfs(['mount', emulator.url, join(mp.path, 'nope')], creds);
    expect(missing.stderr).toMatch(/^xnatfs: mount point \S+ does not exist: create it with mkdir -p \S+\n$/);
  });

  // ── 6. an unprivileged user ─────────────────────────────────────────────────────────────

  const isRoot = process.getuid?.() === 0;

  /**
   * The built CLI where `user` can run it: a readable copy when the clone is not (a fresh clone
   * in a 0700 `mktemp -d`, as CI makes). Made once per suite.
   */
  let readableMain: Promise<string> | null = null;
  let readableCopy: DirectoryResult | null = null;
  afterAll(async () => {
    await readableCopy?.cleanup();
  });
  const mainFor = (user: { uid: number; gid: number }): Promise<string> =>
    (readableMain ??= (async () => {
      const probe = `require(${JSON.stringify(join(repoRoot, 'node_modules/fuse-native/package.json'))}); require('fs').accessSync(${JSON.stringify(MAIN)})`;
      const canRead = await run('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', process.execPath, '-e', probe], { cwd: '/' });
      if (canRead.code === 0) return MAIN;
      readableCopy = await tmpDir({ prefix: 'xnatfs-cli-main-', unsafeCleanup: true });
      await chmod(readableCopy.path, 0o755);
      const copy = join(readableCopy.path, 'xnatfs');
      await mkdir(copy);
      await cp(join(repoRoot, 'dist'), join(copy, 'dist'), { recursive: true });
      await cp(join(repoRoot, 'package.json'), join(copy, 'package.json'));
      await cp(join(repoRoot, 'node_modules'), join(copy, 'node_modules'), { recursive: true, verbatimSymlinks: true });
      await run('chmod', ['-R', 'a+rX', copy]);
      return join(copy, 'dist/cli/main.js');
    })());
  it.skipIf(!isRoot)('an ordinary user mounts, lists and unmounts; root is kept out without allow_other', async () => {
    const mode = (await stat('/dev/fuse')).mode & 0o777;
    if ((mode & 0o006) !== 0o006) {
      const reason = `/dev/fuse is mode ${mode.toString(8)}: ordinary users cannot mount (chmod 0666 /dev/fuse)`;
      if (inCI()) throw new Error(reason);
      console.warn(`\n!!! SKIPPING unprivileged CLI test: ${reason}\n`);
      return;
    }
    const user = await testUser();
    // The user's own home (with the cache) and mount point.
    const base = join(work.path, 'user');
    await mkdir(base);
    await chmod(work.path, 0o755);
    await chmod(base, 0o755);
    const userHome = join(base, 'home');
    const mnt = join(base, 'mnt');
    await mkdir(userHome, { mode: 0o700 });
    await mkdir(mnt);
    await chown(userHome, user.uid, user.gid);
    await chown(mnt, user.uid, user.gid);
    extraMountpoints.push(mnt);
    const as = (cmd: string, args: string[], extra: Record<string, string> = {}): Promise<RunResult> =>
      run('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', cmd, ...args], {
        cwd: '/',
        env: { PATH: process.env.PATH, HOME: userHome, ...extra },
      });

    // The user must be able to run the built CLI.
    const main = await mainFor(user);
    const userEnv = { PATH: process.env.PATH, HOME: userHome, XNAT_USER: 'demo', XNAT_PASS: 'demo' };
    const mounted = start(['mount', emulator.url, mnt, '--cache-dir', join(userHome, 'cache')], {}, { as: user, main, env: userEnv });
    expect((await waitMounted(mounted, mnt, user)).split('\n').filter(Boolean)).toEqual(['DEMO', 'OPEN', 'PRIVATE']);
    // mounted through setuid fusermount, owned by the user
    expect((await run('grep', ['-F', ` ${mnt} `, '/proc/self/mountinfo'])).stdout).toContain(`user_id=${user.uid}`);
    expect((await as('cat', [join(mnt, NOTES, '100%.txt')])).code).toBe(0);
    expect((await stat(join(userHome, 'cache'))).uid).toBe(user.uid);

    // Without allow_other FUSE keeps every other user out, root included.
    const asRoot = await run('ls', [join(mnt, 'projects')]);
    expect(asRoot.code).not.toBe(0);
    expect(asRoot.stderr).toMatch(/Permission denied/);

    const u = await as(process.execPath, [main, 'unmount', mnt]);
    expect(u.code, u.stderr).toBe(0);
    expect(await exitOf(mounted, 15_000)).toEqual({ code: 0, signal: null });
    expect(await fuseMountsUnder(mnt)).toEqual([]);

    // --allow-other without user_allow_other in /etc/fuse.conf: a clear reason, not "fuse failed".
    const conf = await run('grep', ['-qE', '^\\s*user_allow_other\\s*$', '/etc/fuse.conf']);
    if (conf.code !== 0) {
      const ao = await as(process.execPath, [main, 'mount', emulator.url, mnt, '--allow-other', '--cache-dir', join(userHome, 'cache')], {
        XNAT_USER: 'demo',
        XNAT_PASS: 'demo',
      });
      expect(ao.code).toBe(1);
      expect(ao.stderr).toMatch(/user_allow_other.*\/etc\/fuse\.conf/);
      expect(await fuseMountsUnder(mnt)).toEqual([]);
    }
  });

  // ── 7. demo ─────────────────────────────────────────────────────────────────────────────

  it.skipIf(!isRoot)('an ordinary user with a mount point they cannot write: one line saying so, before any login, nothing mounted', async () => {
    const user = await testUser();
    await chmod(work.path, 0o755);
    const theirs = join(work.path, 'not-theirs');
    await mkdir(theirs, { mode: 0o755 }); // root's, as a shared /scratch/xnat would be
    const main = await mainFor(user);
    emulator.resetRequests();
    const r = await run('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', process.execPath, main, 'mount', emulator.url, theirs, '--cache-dir', join(work.path, 'c')], {
      cwd: '/',
      env: { PATH: process.env.PATH, HOME: '/nonexistent', XNAT_USER: 'demo', XNAT_PASS: 'demo' },
    });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe(`xnatfs: mount point ${theirs} is not writable by you (mode 0755, owner uid 0): fusermount mounts only on a directory you may write; use one of your own, e.g. mkdir -p $TMPDIR/xnat\n`);
    expect(emulator.requests().filter((q) => q.url.startsWith('/data/JSESSION'))).toEqual([]);
    expect(await fuseMountsUnder(theirs)).toEqual([]);
  });

  it('demo and emulator on a port in use: one line naming it, exit 1, no temp folders left; demo --port abc is a usage error', async () => {
    const tmp = join(work.path, 'tmp');
    await mkdir(tmp);
    const port = String(emulator.port); // taken by this suite's emulator
    for (const args of [['demo', join(work.path, 'demo-mp'), '--once', '--port', port], ['emulator', '--port', port]]) {
      const r = await xnatfs(args, { TMPDIR: tmp });
      expect(r.code, args[0]).toBe(1);
      expect(r.stderr).toBe(`xnatfs: port ${port} is in use: choose another with --port\n`);
      expect(await readdir(tmp), args[0]).toEqual([]);
    }
    const bad = await xnatfs(['demo', join(work.path, 'demo-mp'), '--once', '--port', 'abc'], { TMPDIR: tmp });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--port: 'abc' must be a number");
    expect(await readdir(tmp)).toEqual([]);
  });

  it('xnatfs demo MP --once prints the tour, dcm2niix included, and leaves nothing mounted', async () => {
    const r = await xnatfs(['demo', mp.path, '--once'], {}, 180_000);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/XNAT emulator at http:\/\/127\.0\.0\.1:\d+ .*mounted at /);
    expect(r.stdout).toContain(`$ ls ${mp.path}/projects\nDEMO\nOPEN\nPRIVATE\n`);
    expect(r.stdout).toContain('4-Ax_3D_T1');
    expect(r.stdout).toMatch(/SUBJ01_MR1\.MR\.4\.0001\.dcm/);
    expect(r.stdout).toMatch(/\$ dcm2niix /);
    expect(r.stdout).toMatch(/Found 96 DICOM file/);
    expect(r.stdout).toMatch(/\.nii\n/);
    expect(r.stdout).not.toMatch(/not available/);
    expect(await fuseMountsUnder(mp.path)).toEqual([]);
  });

  // ── 8. read-only ────────────────────────────────────────────────────────────────────────

  it('mount --read-only: writes fail with "Read-only file system"', async () => {
    const m = start(['mount', emulator.url, mp.path, '--read-only', '--cache-dir', join(work.path, 'cache')], { XNAT_USER: 'demo', XNAT_PASS: 'demo' });
    await waitMounted(m, mp.path);
    expect(m.out.stderr).toContain('(read-only)');
    const t = await run('touch', [join(mp.path, NOTES, 'x')]);
    expect(t.code).not.toBe(0);
    expect(t.stderr).toMatch(/Read-only file system/);
    const mk = await run('mkdir', [join(mp.path, 'projects/DEMO/experiments/SUBJ01_MR1/resources/NEWRES')]);
    expect(mk.stderr).toMatch(/Read-only file system/);
    // reading still works
    expect((await run('cat', [join(mp.path, NOTES, 'a+b.txt')])).code).toBe(0);
    expect(emulator.storedFilePath('DEMO', 'SUBJ01', 'SUBJ01_MR1', null, 'NOTES', 'x')).toBeNull();
    m.child.kill('SIGINT');
    expect((await exitOf(m)).code).toBe(0);
  });
});
