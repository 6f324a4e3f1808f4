// Child processes of the benchmark: timed shell commands, the emulator host, xnatfs mounts and
// in-memory mounts, each in its own process. Everything started here is tracked so that
// cleanup() (on exit, error or Ctrl-C) stops it and detaches every mount point it made.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMounted, unmountPath } from '../../../src/fs/mountpoint.js';

const children = new Set<ChildProcess>();
const mountpoints = new Set<string>();
const finalizers: Array<() => Promise<void>> = [];

/** Also run `fn` at cleanup (after children and mounts are gone), e.g. to remove scratch space. */
export function atCleanup(fn: () => Promise<void>): void {
  finalizers.push(fn);
}

function track(cp: ChildProcess): ChildProcess {
  children.add(cp);
  cp.once('exit', () => children.delete(cp));
  return cp;
}

const exited = (cp: ChildProcess): boolean => cp.exitCode !== null || cp.signalCode !== null;

async function waitExit(cp: ChildProcess, ms: number): Promise<boolean> {
  if (exited(cp)) return true;
  return Promise.race([
    new Promise<boolean>((r) => cp.once('exit', () => r(true))),
    sleep(ms, undefined, { ref: false }).then(() => exited(cp)),
  ]);
}

async function detach(mp: string): Promise<void> {
  try {
    if (await isMounted(mp)) await unmountPath(mp, { lazy: true });
  } catch (err) {
    console.error(`bench: could not unmount ${mp}: ${(err as Error).message}`);
  }
}

/** Stop every child (SIGTERM, then SIGKILL) and detach every mount point this run made. */
export async function cleanup(): Promise<void> {
  const list = [...children];
  for (const cp of list) if (!exited(cp)) cp.kill('SIGTERM');
  await Promise.all(list.map(async (cp) => {
    if (!(await waitExit(cp, 10_000))) {
      cp.kill('SIGKILL');
      await waitExit(cp, 2_000);
    }
  }));
  for (const mp of [...mountpoints]) {
    await detach(mp);
    mountpoints.delete(mp);
  }
  for (const fn of finalizers.splice(0)) await fn().catch((err: unknown) => console.error(`bench: cleanup: ${(err as Error).message}`));
}

let signalled = false;
/** Whether the run was interrupted (failures after that are expected, not worth reporting). */
export const interrupted = (): boolean => signalled;

export function installCleanupHandlers(): void {
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) process.exit(130);
    signalled = true;
    console.error(`\nbench: ${sig}: stopping children and unmounting…`);
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
}

export interface RunResult {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd` with bash (pipefail) and times it from spawn to exit (process.hrtime). Output is kept (the
 * commands send bulk data to /dev/null or to wc themselves).
 */
export function sh(cmd: string, o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const cp = track(spawn('bash', ['-o', 'pipefail', '-c', cmd], { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    cp.stdout!.on('data', (d: Buffer) => void (stdout.length < 1 << 20 && (stdout += d.toString())));
    cp.stderr!.on('data', (d: Buffer) => void (stderr.length < 1 << 20 && (stderr += d.toString())));
    cp.once('error', reject);
    cp.once('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      resolve({ ms, code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** sh() that throws on a non-zero exit. */
export async function shOk(cmd: string, o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const r = await sh(cmd, o);
  if (r.code !== 0) throw new Error(`command failed (${r.code}): ${cmd}\n${r.stderr.slice(0, 2000)}`);
  return r;
}

let dropWorks: boolean | undefined;
/** sync + drop the kernel page cache (needs root). Returns false (once warned) if it cannot. */
export async function dropCaches(): Promise<boolean> {
  if (dropWorks === false) return false;
  await sh('sync');
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3\n');
    dropWorks = true;
  } catch (err) {
    dropWorks = false;
    console.error(`bench: cannot drop the page cache (${(err as NodeJS.ErrnoException).code}): local-disk baselines run warm`);
  }
  return dropWorks;
}
export const cachesDropped = (): boolean | undefined => dropWorks;

// ------------------------------------------------------------------ emulator host

export interface EmulatorHost {
  url: string;
  requests(): Promise<Array<{ method: string; url: string; status: number }>>;
  reset(): Promise<void>;
  setOptions(o: { latencyMs?: number; bandwidthBytesPerSec?: number; rangeSupport?: boolean }): Promise<void>;
  close(): Promise<void>;
}

export async function startEmulatorHost(script: string, args: { dataDir: string; latencyMs: number }, logFile: string): Promise<EmulatorHost> {
  const log = createWriteStream(logFile, { flags: 'a' });
  const cp = track(fork(script, [JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: process.env }));
  cp.stdout!.pipe(log, { end: false });
  cp.stderr!.pipe(log, { end: false });
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const url = await new Promise<string>((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`emulator host exited (${code}) before it was ready; see ${logFile}`));
    cp.once('exit', onExit);
    cp.on('message', (raw) => {
      const m = raw as { ready?: boolean; url?: string; id?: number; ok?: boolean; result?: unknown; error?: string };
      if (m.ready) {
        cp.off('exit', onExit);
        resolve(m.url!);
        return;
      }
      const p = pending.get(m.id ?? -1);
      if (!p) return;
      pending.delete(m.id!);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error ?? 'emulator host error'));
    });
  });
  cp.once('exit', () => {
    for (const p of pending.values()) p.reject(new Error('emulator host exited'));
    pending.clear();
  });
  const call = (op: string, extra: object = {}): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      cp.send({ id, op, ...extra });
    });
  return {
    url,
    requests: async () => (await call('requests')) as Array<{ method: string; url: string; status: number }>,
    reset: async () => void (await call('reset')),
    setOptions: async (options) => void (await call('setOptions', { options })),
    async close() {
      if (exited(cp)) return;
      await call('close').catch(() => undefined);
      if (!(await waitExit(cp, 10_000))) cp.kill('SIGKILL');
      log.end();
    },
  };
}

// ------------------------------------------------------------------ mounts

export interface MountProc {
  mountpoint: string;
  /** Milliseconds from spawn until the mount answered. */
  startMs: number;
  stop(): Promise<void>;
}

async function freshDir(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
  await mkdir(path, { recursive: true });
}

async function stopMountProc(cp: ChildProcess, mp: string, log: WriteStream): Promise<void> {
  if (!exited(cp)) {
    cp.kill('SIGTERM');
    if (!(await waitExit(cp, 60_000))) {
      console.error(`bench: mount process for ${mp} did not stop within 60 s; killing it`);
      cp.kill('SIGKILL');
      await waitExit(cp, 5_000);
    }
  }
  await detach(mp);
  mountpoints.delete(mp);
  await new Promise<void>((r) => log.end(() => r()));
}

/** `xnatfs mount URL MP --cache-dir CACHE` in its own process, with an empty cache. */
export async function startXnatMount(o: {
  cli: string;
  url: string;
  mountpoint: string;
  cacheDir: string;
  extraArgs: string[];
  logFile: string;
  debug: boolean;
}): Promise<MountProc> {
  await detach(o.mountpoint);
  await freshDir(o.mountpoint);
  await freshDir(o.cacheDir);
  const log = createWriteStream(o.logFile, { flags: 'a' });
  const env: NodeJS.ProcessEnv = { ...process.env, XNAT_USER: 'demo', XNAT_PASS: 'demo' };
  if (o.debug) env['DEBUG'] = 'xnatfs:*';
  else delete env['DEBUG'];
  const t0 = process.hrtime.bigint();
  mountpoints.add(o.mountpoint);
  const cp = track(spawn(process.execPath, [o.cli, 'mount', o.url, o.mountpoint, '--cache-dir', o.cacheDir, ...o.extraArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
  cp.stdout!.pipe(log, { end: false });
  cp.stderr!.pipe(log, { end: false });
  try {
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`mount at ${o.mountpoint} not ready after 60 s; see ${o.logFile}`)), 60_000);
      const onData = (d: Buffer): void => {
        buf = (buf + d.toString()).slice(-4096);
        if (/xnatfs: mounted /.test(buf)) {
          clearTimeout(timer);
          cp.stderr!.off('data', onData);
          resolve();
        }
      };
      cp.stderr!.on('data', onData);
      cp.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`mount process exited (${code}) before mounting; see ${o.logFile}`));
      });
    });
  } catch (err) {
    await stopMountProc(cp, o.mountpoint, log);
    throw err;
  }
  const startMs = Number(process.hrtime.bigint() - t0) / 1e6;
  return { mountpoint: o.mountpoint, startMs, stop: () => stopMountProc(cp, o.mountpoint, log) };
}

/** The in-memory FsOps (memfs-host.js) mounted through the same adapter, in its own process. */
export async function startMemMount(o: { script: string; mountpoint: string; kind: 'small' | 'large' | 'tree' | 'empty'; sizes: object; logFile: string; handleCallbacks?: boolean }): Promise<MountProc> {
  await detach(o.mountpoint);
  await freshDir(o.mountpoint);
  const log = createWriteStream(o.logFile, { flags: 'a' });
  const t0 = process.hrtime.bigint();
  mountpoints.add(o.mountpoint);
  const cp = track(fork(o.script, [JSON.stringify({ mountpoint: o.mountpoint, kind: o.kind, sizes: o.sizes, handleCallbacks: o.handleCallbacks ?? false })], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: { ...process.env, DEBUG: '' } }));
  cp.stdout!.pipe(log, { end: false });
  cp.stderr!.pipe(log, { end: false });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`memfs mount at ${o.mountpoint} not ready after 120 s; see ${o.logFile}`)), 120_000);
      cp.on('message', (m) => {
        if ((m as { ready?: boolean }).ready) {
          clearTimeout(timer);
          resolve();
        }
      });
      cp.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`memfs host exited (${code}) before mounting; see ${o.logFile}`));
      });
    });
  } catch (err) {
    await stopMountProc(cp, o.mountpoint, log);
    throw err;
  }
  const startMs = Number(process.hrtime.bigint() - t0) / 1e6;
  return { mountpoint: o.mountpoint, startMs, stop: () => stopMountProc(cp, o.mountpoint, log) };
}

export const joinPath = join;
