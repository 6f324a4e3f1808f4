// xnatfs benchmark (issues #3 and #4). Run with scripts/bench (or npm run bench), which builds
// this file together with src/ into dist-bench/.
//
// Every process is separate: this driver only spawns and times programs; the emulator runs in
// emulator-host.js, each xnatfs mount in `node dist-bench/src/cli/main.js mount …`, the binding's
// floor/ceiling in memfs-host.js. "Cold" = a fresh mount process with an empty cache dir, and the
// kernel page cache dropped right before every timed command (both sides).
import { parseArgs } from 'node:util';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSize } from '../src/cli/args.js';
import {
  ensureFixtures, MOUNT_PATHS, REST_PATHS, smallBytes, streamFor, WALK, type BenchSizes,
} from './lib/bench/fixtures.js';
import {
  atCleanup, cachesDropped, cleanup, dropCaches, installCleanupHandlers, interrupted, sh, shOk, startEmulatorHost, startMemMount, startXnatMount,
  type EmulatorHost, type MountProc, type RunResult,
} from './lib/bench/procs.js';
import { markdownTable, median, ratios, svgChart, textTable, verdict, type Row } from './lib/bench/report.js';

const HELP = `Usage: scripts/bench [options]      (npm run bench -- [options])

Benchmarks a cold xnatfs mount of the XNAT emulator against curl/unzip/local-disk baselines and
against the FUSE binding's own ceiling (an in-memory filesystem through the same adapter).

  --runs N            repetitions per measurement (default 3; min and median are reported)
  --quick             smoke run: 1 repetition, smaller fixtures
  --only LIST         subset of targets, e.g. a,c (a dcm2niix, b small files, c large file,
                      d ls -lR/find of a big experiment, e upload)
  --latency-ms N      per-request latency injected by the emulator (default 20)
  --cap BYTES         per-response bandwidth cap for c) (default 100000000 = 100 MB/s)
  --large-size SIZE   size of the large file of c) (default 512M)
  --upload-size SIZE  size of the uploaded file of e) (default 256M)
  --mount-arg ARG     extra argument for \`xnatfs mount\` (repeatable), e.g. --mount-arg=--no-prefetch
  --debug-mount       run the mounts with DEBUG=xnatfs:* (logs in bench-out/logs/)
  --out DIR           results directory (default bench-out/)
  --work DIR          scratch space: mount points, caches, downloads, local copies
                      (default: a fresh folder in the system temp dir, removed afterwards)
  --keep-work         keep the scratch folder afterwards

Writes DIR/results.json, DIR/bench.svg, DIR/performance.md; fixtures are cached in
DIR/fixtures/ (delete it to regenerate or to reclaim the space).
`;

const here = dirname(fileURLToPath(import.meta.url)); // dist-bench/scripts
const root = join(here, '..', '..');
const CLI = join(here, '..', 'src', 'cli', 'main.js');
const EMU_HOST = join(here, 'lib', 'bench', 'emulator-host.js');
const MEM_HOST = join(here, 'lib', 'bench', 'memfs-host.js');

interface Settings {
  runs: number;
  quick: boolean;
  only: Set<string>;
  latencyMs: number;
  capBytesPerSec: number;
  sizes: BenchSizes;
  mountArgs: string[];
  debugMount: boolean;
  out: string;
  keepWork: boolean;
  work?: string;
}

function settingsFrom(argv: string[]): Settings | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'latency-ms': { type: 'string' },
      cap: { type: 'string' },
      'large-size': { type: 'string' },
      'upload-size': { type: 'string' },
      'mount-arg': { type: 'string', multiple: true },
      'debug-mount': { type: 'boolean', default: false },
      out: { type: 'string' },
      'keep-work': { type: 'boolean', default: false },
      work: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return null;
  }
  const quick = values.quick ?? false;
  const num = (v: string | undefined, what: string, fallback: number): number => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${what}: '${v}' is not a number`);
    return n;
  };
  const sizes: BenchSizes = quick
    ? { dicomSlices: 100, dicomMatrix: 192, smallCount: 500, smallMin: 1024, smallMax: 4096, largeBytes: 64 * 2 ** 20, treeScans: 4, treeDicomPerScan: 450, treeSnapshotsPerScan: 50, uploadBytes: 32 * 2 ** 20 }
    : { dicomSlices: 100, dicomMatrix: 192, smallCount: 2000, smallMin: 1024, smallMax: 4096, largeBytes: 512 * 2 ** 20, treeScans: 10, treeDicomPerScan: 900, treeSnapshotsPerScan: 100, uploadBytes: 256 * 2 ** 20 };
  if (values['large-size']) sizes.largeBytes = parseSize(values['large-size'], '--large-size');
  if (values['upload-size']) sizes.uploadBytes = parseSize(values['upload-size'], '--upload-size');
  const only = new Set((values.only ?? 'a,b,c,d,e').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
  for (const t of only) if (!'abcde'.includes(t) || t.length !== 1) throw new Error(`--only: unknown target '${t}'`);
  return {
    runs: Math.max(1, Math.floor(num(values.runs, '--runs', quick ? 1 : 3))),
    quick,
    only,
    latencyMs: num(values['latency-ms'], '--latency-ms', 20),
    capBytesPerSec: num(values.cap, '--cap', 100e6),
    sizes,
    mountArgs: values['mount-arg'] ?? [],
    debugMount: values['debug-mount'] ?? false,
    out: values.out ?? join(root, 'bench-out'),
    keepWork: values['keep-work'] ?? false,
    work: values.work,
  };
}

const T0 = Date.now();
const log = (m: string): void => void process.stderr.write(`${m.replace(/^(\n*)/, (nl) => `${nl}[${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] `)}\n`);
const fmtS = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const MiB = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

/** Request log → counts by kind (listing, file GET, zip, HEAD, PUT, …). */
function classify(reqs: Array<{ method: string; url: string; status: number }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reqs) {
    const path = r.url.split('?')[0]!;
    let kind: string;
    if (r.method !== 'GET') kind = r.method;
    else if (/[?&]format=zip/.test(r.url)) kind = 'GET zip';
    else if (/\/files\/.+/.test(path)) kind = 'GET file';
    else kind = 'GET listing';
    out[kind] = (out[kind] ?? 0) + 1;
  }
  return out;
}

async function machine(): Promise<Record<string, string>> {
  const first = async (cmd: string): Promise<string> => (await sh(cmd)).stdout.split('\n').find((l) => l.trim())?.trim() ?? '?';
  return {
    cpu: `${cpus()[0]?.model ?? '?'} × ${cpus().length}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    kernel: release(),
    node: process.version,
    dcm2niix: (await first('dcm2niix --version 2>&1 | grep -o "v[0-9.]*" | tail -1')) || '?',
    curl: await first('curl --version'),
    unzip: await first('unzip -v | head -1'),
    date: new Date().toISOString(),
    // which code was measured (read-only git queries; '?' outside a checkout)
    commit: (await first(`git -C '${root}' rev-parse --short HEAD 2>/dev/null`)) || '?',
    srcChanges: String(Number((await sh(`git -C '${root}' status --porcelain -- src 2>/dev/null | wc -l`)).stdout.trim() || 0)),
  };
}

async function main(): Promise<number> {
  const s = settingsFrom(process.argv.slice(2));
  if (!s) return 0;
  installCleanupHandlers();

  for (const tool of ['curl', 'unzip', 'dcm2niix', 'find', 'cp']) {
    if ((await sh(`command -v ${tool}`)).code !== 0) throw new Error(`${tool} is not installed (see scripts/setup)`);
  }
  if (process.getuid?.() !== 0) log('bench: not root: the page cache cannot be dropped, local baselines will run warm');

  const out = s.out;
  // Scratch space (mount points, caches, local copies) under the system temp dir.
  const work = s.work ?? join(tmpdir(), `xnatfs-bench-${process.pid}`);
  const logs = join(out, 'logs');
  const sizesKey = `${s.sizes.dicomSlices}x${s.sizes.dicomMatrix}-${s.sizes.smallCount}-${s.sizes.largeBytes}-${s.sizes.treeScans}x${s.sizes.treeDicomPerScan + s.sizes.treeSnapshotsPerScan}`;
  const dataDir = join(out, 'fixtures', sizesKey);
  await rm(work, { recursive: true, force: true });
  await rm(logs, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  await mkdir(logs, { recursive: true });
  if (!s.keepWork) atCleanup(() => rm(work, { recursive: true, force: true }));

  const info = await machine();
  log(`xnatfs benchmark: ${s.runs} run(s), latency ${s.latencyMs} ms/request, cap ${(s.capBytesPerSec / 1e6).toFixed(0)} MB/s for c), targets ${[...s.only].join(',')}`);
  log(`machine: ${info.cpu}, ${info.memory}, Linux ${info.kernel}, Node ${info.node}, dcm2niix ${info.dcm2niix}`);
  log(`code: commit ${info.commit}${info.srcChanges !== '0' ? ` + ${info.srcChanges} uncommitted change(s) in src/` : ''}`);

  log(`fixtures in ${dataDir}`);
  const made = await ensureFixtures(dataDir, s.sizes, log);
  if (!made) log('  (reused)');

  const emu: EmulatorHost = await startEmulatorHost(EMU_HOST, { dataDir, latencyMs: s.latencyMs }, join(logs, 'emulator.log'));
  log(`emulator ${emu.url} (own process)`);
  const url = emu.url;
  const auth = '-u demo:demo';

  const rows: Row[] = [];
  const mountStarts: number[] = [];
  let mountSeq = 0;
  const mp = join(work, 'mnt');
  const memMp = join(work, 'memmnt');

  /** A fresh mount with an empty cache; fn runs right after the page cache is dropped; requests counted. */
  const onColdMount = async (row: Row, fn: (mp: string) => Promise<RunResult>, check?: (r: RunResult) => void, extraArgs: string[] = []): Promise<{ r: RunResult; requests: number; kinds: Record<string, number>; m: MountProc }> => {
    const n = mountSeq++;
    const cacheDir = join(work, `cache-${n}`);
    const m = await startXnatMount({ cli: CLI, url, mountpoint: mp, cacheDir, extraArgs: [...s.mountArgs, ...extraArgs], logFile: join(logs, `mount-${n}.log`), debug: s.debugMount });
    mountStarts.push(m.startMs);
    try {
      await dropCaches();
      await emu.reset();
      const r = await fn(m.mountpoint);
      // A failure is recorded (row marked ERROR, time kept) rather than ending the benchmark.
      const fail = (msg: string): void => {
        if (interrupted()) return;
        const line = `run ${row.mount.length + 1}: ${msg}`;
        (row.errors ??= []).push(line);
        log(`  ERROR ${row.id} ${line}`);
      };
      if (r.code !== 0) fail(`exit ${r.code}: ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}${r.stderr.trim().split('\n').length > 3 ? ` (+${r.stderr.trim().split('\n').length - 3} more lines)` : ''}`);
      try {
        check?.(r);
      } catch (err) {
        fail((err as Error).message);
      }
      const reqs = await emu.requests();
      return { r, requests: reqs.length, kinds: classify(reqs), m };
    } finally {
      await m.stop();
      await rm(cacheDir, { recursive: true, force: true });
    }
  };
  const onMemMount = async (kind: 'small' | 'large' | 'tree' | 'empty', fn: (mp: string) => Promise<RunResult>, handleCallbacks = false): Promise<RunResult> => {
    const m = await startMemMount({ script: MEM_HOST, mountpoint: memMp, kind, sizes: s.sizes, logFile: join(logs, 'memfs.log'), handleCallbacks });
    try {
      await dropCaches();
      const r = await fn(m.mountpoint);
      if (r.code !== 0) throw new Error(`command on the in-memory mount failed (${r.code}): ${r.stderr.slice(0, 2000)}`);
      return r;
    } finally {
      await m.stop();
    }
  };
  const cold = async (cmd: string): Promise<RunResult> => {
    await dropCaches();
    return shOk(cmd);
  };
  /** Alternate which side goes first, so slow drift on a shared machine hits both. */
  const pair = async (i: number, a: () => Promise<void>, b: () => Promise<void>): Promise<void> => {
    if (i % 2 === 0) {
      await a();
      await b();
    } else {
      await b();
      await a();
    }
  };

  try {
    // ------------------------------------------------------------------ a) dcm2niix
    if (s.only.has('a')) {
      log(`\na) dcm2niix of a ${s.sizes.dicomSlices}-file DICOM series, ${s.latencyMs} ms/request`);
      const row: Row = {
        id: 'a', title: `dcm2niix ${s.sizes.dicomSlices}-file series vs zip+unzip+dcm2niix`, mountLabel: 'dcm2niix on the mount', baselineLabel: 'curl zip + unzip + dcm2niix',
        mount: [], baseline: [], ratioKind: 'time', goal: { op: '<=', value: 1.0 }, requests: [], extra: { phases: [] as unknown[], requestKinds: [] as unknown[], nifti: [] as unknown[] },
      };
      const dir = join(work, 'a');
      const niiSize = async (d: string): Promise<number> => {
        const f = (await readdir(d)).find((n) => n.endsWith('.nii'));
        return f ? (await stat(join(d, f))).size : -1;
      };
      for (let i = 0; i < s.runs; i++) {
        await rm(dir, { recursive: true, force: true });
        await mkdir(join(dir, 'out-mount'), { recursive: true });
        await mkdir(join(dir, 'out-base'), { recursive: true });
        let mountNii = 0;
        let baseNii = 0;
        await pair(i, async () => {
          const res = await onColdMount(row, (m) => sh(`dcm2niix -z n -d 9 -f mount -o '${dir}/out-mount' '${m}/${MOUNT_PATHS.series}' > '${dir}/dcm2niix-mount.log' 2>&1`));
          row.mount.push(res.r.ms);
          row.requests!.push(res.requests);
          (row.extra!['requestKinds'] as unknown[]).push(res.kinds);
          mountNii = await niiSize(join(dir, 'out-mount'));
        }, async () => {
          await rm(join(dir, 'unz'), { recursive: true, force: true });
          await rm(join(dir, 'series.zip'), { force: true });
          const c = await cold(`curl -sSf ${auth} -o '${dir}/series.zip' '${url}${REST_PATHS.seriesZip}'`);
          const u = await shOk(`unzip -q -o '${dir}/series.zip' -d '${dir}/unz'`);
          const d = await shOk(`dcm2niix -z n -d 9 -f base -o '${dir}/out-base' '${dir}/unz' > '${dir}/dcm2niix-base.log' 2>&1`);
          row.baseline.push(c.ms + u.ms + d.ms);
          (row.extra!['phases'] as unknown[]).push({ curlMs: c.ms, unzipMs: u.ms, dcm2niixMs: d.ms, zipBytes: (await stat(join(dir, 'series.zip'))).size });
          baseNii = await niiSize(join(dir, 'out-base'));
        });
        (row.extra!['nifti'] as unknown[]).push({ mountBytes: mountNii, baselineBytes: baseNii, same: mountNii === baseNii });
        if (mountNii !== baseNii || baseNii < 0) {
          (row.errors ??= []).push(`run ${i + 1}: NIfTI written from the mount is ${mountNii} bytes, from the zip ${baseNii} (-1 = none)`);
          log(`  ERROR a: NIfTI sizes differ: mount ${mountNii}, baseline ${baseNii}`);
        }
        const ph = (row.extra!['phases'] as Array<Record<string, number>>).at(-1)!;
        log(`  run ${i + 1}: mount ${fmtS(row.mount.at(-1)!)} (${row.requests!.at(-1)} requests), baseline ${fmtS(row.baseline.at(-1)!)} (curl ${fmtS(ph['curlMs']!)}, unzip ${fmtS(ph['unzipMs']!)}, dcm2niix ${fmtS(ph['dcm2niixMs']!)})`);
      }
      rows.push(row);
    }

    // ------------------------------------------------------------------ b) small files
    if (s.only.has('b')) {
      const n = s.sizes.smallCount;
      const total = smallBytes(s.sizes);
      log(`\nb) find -exec cat over ${n} small files (${(total / 1e6).toFixed(1)} MB), ${s.latencyMs} ms/request`);
      const row: Row = {
        id: 'b', title: `cat ${n} small files vs in-memory FUSE floor`, mountLabel: 'find -exec cat on the mount', baselineLabel: 'the same on an in-memory FsOps',
        mount: [], baseline: [], ratioKind: 'time', goal: { op: '<=', value: 1.5 }, requests: [], extra: { requestKinds: [] as unknown[] },
      };
      const zipRow: Row = {
        id: 'b2', title: `cat ${n} small files vs curl zip + unzip`, mountLabel: 'find -exec cat on the mount', baselineLabel: 'curl zip + unzip (files not read)',
        mount: row.mount, baseline: [], ratioKind: 'time', requests: row.requests, extra: { phases: [] as unknown[] },
      };
      // The floor leaves flush and release to libfuse; xnatfs needs both for its handles, so
      // every file costs it five trips to the main thread (lookup, open, read, flush, release)
      // against three. This row is the floor with those two callbacks as no-ops.
      const handlesRow: Row = {
        id: 'b3', title: `cat ${n} small files from memory with flush+release callbacks`, mountLabel: 'the floor plus no-op flush and release', baselineLabel: '',
        mount: [], baseline: [], ratioKind: 'time',
      };
      // Users who only read can mount --read-only: only the read callbacks are registered, so
      // closing a file costs no flush trip. Against the same floor runs as b.
      const readOnlyRow: Row = {
        id: 'b4', title: `cat ${n} small files on a --read-only mount vs the same floor`, mountLabel: 'find -exec cat on a --read-only mount', baselineLabel: 'the same on an in-memory FsOps',
        mount: [], baseline: row.baseline, ratioKind: 'time', requests: [],
      };
      // The same read again on the same mount, its files now in the mount's memory and the kernel's
      // caches dropped: what the cold run costs beyond the per-file round trips (listings, the zip's
      // first bytes, code that V8 has not compiled yet in a fresh process). Against the same floor runs.
      const againRow: Row = {
        id: 'b5', title: `cat ${n} small files again on the same mount (in its memory) vs the same floor`, mountLabel: 'find -exec cat, second time, kernel caches dropped', baselineLabel: 'the same on an in-memory FsOps',
        mount: [], baseline: row.baseline, ratioKind: 'time', requests: [],
      };
      const check = (r: RunResult): void => {
        const got = Number(r.stdout.trim());
        if (got !== total) throw new Error(`read ${got} bytes, expected ${total}`);
      };
      const dir = join(work, 'b');
      for (let i = 0; i < s.runs; i++) {
        await pair(i, async () => {
          const readAll = (m: string): Promise<RunResult> => sh(`find '${m}/${MOUNT_PATHS.small}' -type f -exec cat {} + | wc -c`);
          let again: { r: RunResult; requests: number } | null = null;
          const res = await onColdMount(row, async (m) => {
            const first = await readAll(m);
            const before = (await emu.requests()).length;
            await dropCaches();
            const r = await readAll(m);
            again = { r, requests: (await emu.requests()).length - before };
            return first;
          }, check);
          const a = again as { r: RunResult; requests: number } | null;
          if (a) {
            try {
              if (a.r.code !== 0) throw new Error(`exit ${a.r.code}: ${a.r.stderr.trim().split('\n')[0]}`);
              check(a.r);
            } catch (err) {
              (againRow.errors ??= []).push(`run ${i + 1}: ${(err as Error).message}`);
              log(`  ERROR b5 run ${i + 1}: ${(err as Error).message}`);
            }
            againRow.mount.push(a.r.ms);
            againRow.requests!.push(a.requests);
          }
          row.mount.push(res.r.ms);
          row.requests!.push(res.requests);
          (row.extra!['requestKinds'] as unknown[]).push(res.kinds);
        }, async () => {
          const r = await onMemMount('small', (m) => sh(`find '${m}/files' -type f -exec cat {} + | wc -c`));
          check(r);
          row.baseline.push(r.ms);
        });
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        const c = await cold(`curl -sSf ${auth} -o '${dir}/small.zip' '${url}${REST_PATHS.smallZip}'`);
        const u = await shOk(`unzip -q -o '${dir}/small.zip' -d '${dir}/unz'`);
        zipRow.baseline.push(c.ms + u.ms);
        (zipRow.extra!['phases'] as unknown[]).push({ curlMs: c.ms, unzipMs: u.ms });
        const h = await onMemMount('small', (m) => sh(`find '${m}/files' -type f -exec cat {} + | wc -c`), true);
        check(h);
        handlesRow.mount.push(h.ms);
        const ro = await onColdMount(readOnlyRow, (m) => sh(`find '${m}/${MOUNT_PATHS.small}' -type f -exec cat {} + | wc -c`), check, ['--read-only']);
        readOnlyRow.mount.push(ro.r.ms);
        readOnlyRow.requests!.push(ro.requests);
        log(`  run ${i + 1}: mount ${fmtS(row.mount.at(-1)!)} (${row.requests!.at(-1)} requests; again ${fmtS(againRow.mount.at(-1) ?? NaN)}, ${againRow.requests!.at(-1)} requests), in-memory floor ${fmtS(row.baseline.at(-1)!)} (with flush+release ${fmtS(h.ms)}), --read-only mount ${fmtS(ro.r.ms)}, curl zip ${fmtS(c.ms)} + unzip ${fmtS(u.ms)}`);
      }
      if (row.errors) zipRow.errors = row.errors;
      rows.push(row, zipRow, handlesRow, readOnlyRow, againRow);
    }

    // ------------------------------------------------------------------ c) large file
    if (s.only.has('c')) {
      const bytes = s.sizes.largeBytes;
      log(`\nc) cat of a ${MiB(bytes)} file, ${s.latencyMs} ms/request`);
      const mk = (id: string, title: string, goal?: Row['goal']): Row => ({
        id, title, mountLabel: 'cat on the mount', baselineLabel: 'curl -o /dev/null', mount: [], baseline: [], bytes, ratioKind: 'throughput', goal, requests: [], extra: { requestKinds: [] as unknown[] },
      });
      const capped = mk('c1', `cat ${MiB(bytes)}, server capped ${(s.capBytesPerSec / 1e6).toFixed(0)} MB/s, vs curl`, { op: '>=', value: 0.9 });
      const free = mk('c2', `cat ${MiB(bytes)}, uncapped, vs curl`);
      const ceiling: Row = {
        id: 'c3', title: `cat ${MiB(bytes)} from memory (binding ceiling)`, mountLabel: 'cat on an in-memory FsOps', baselineLabel: '', mount: [], baseline: [], bytes, ratioKind: 'throughput',
      };
      const curlCheck = (r: RunResult): void => {
        if (Number(r.stdout.trim()) !== bytes) throw new Error(`curl got ${r.stdout.trim()} bytes, expected ${bytes}`);
      };
      for (const [row, cap] of [[capped, s.capBytesPerSec], [free, 0]] as Array<[Row, number]>) {
        await emu.setOptions({ bandwidthBytesPerSec: cap });
        for (let i = 0; i < s.runs; i++) {
          await pair(i, async () => {
            const res = await onColdMount(row, (m) => sh(`cat '${m}/${MOUNT_PATHS.large}' > /dev/null`));
            row.mount.push(res.r.ms);
            row.requests!.push(res.requests);
            (row.extra!['requestKinds'] as unknown[]).push(res.kinds);
          }, async () => {
            const r = await cold(`curl -sSf ${auth} -o /dev/null -w '%{size_download}' '${url}${REST_PATHS.large}'`);
            curlCheck(r);
            row.baseline.push(r.ms);
          });
          log(`  ${row.id} run ${i + 1}: mount ${fmtS(row.mount.at(-1)!)} = ${(bytes / 1e6 / (row.mount.at(-1)! / 1000)).toFixed(0)} MB/s (${row.requests!.at(-1)} requests), curl ${fmtS(row.baseline.at(-1)!)} = ${(bytes / 1e6 / (row.baseline.at(-1)! / 1000)).toFixed(0)} MB/s`);
        }
      }
      await emu.setOptions({ bandwidthBytesPerSec: 0 });
      for (let i = 0; i < s.runs; i++) {
        const r = await onMemMount('large', (m) => sh(`cat '${m}/large.bin' > /dev/null`));
        ceiling.mount.push(r.ms);
        log(`  c3 run ${i + 1}: in-memory ${fmtS(r.ms)} = ${(bytes / 1e6 / (r.ms / 1000)).toFixed(0)} MB/s`);
      }
      rows.push(capped, free, ceiling);
    }

    // ------------------------------------------------------------------ d) big experiment
    if (s.only.has('d')) {
      const nFiles = s.sizes.treeScans * (s.sizes.treeDicomPerScan + s.sizes.treeSnapshotsPerScan);
      log(`\nd) ls -lR and find over an experiment of ${nFiles} files, ${s.latencyMs} ms/request`);
      const local = join(work, 'd-local', 'experiment');
      const mkRow = (id: string, what: string): Row => ({
        id, title: `${what} ${nFiles}-file experiment vs local disk`, mountLabel: `${what} on the mount`, baselineLabel: `${what} on a local copy`,
        mount: [], baseline: [], ratioKind: 'time', requests: [], extra: { requestKinds: [] as unknown[], lines: [] as unknown[] },
      });
      const lsRow = mkRow('d1', 'ls -lR');
      const findRow = mkRow('d2', 'find');
      let localReady = false;
      /** A local copy of what the mount shows under `base` (same folders, names and sizes). */
      const makeLocal = async (base: string, dest: string): Promise<void> => {
        const dirs = (await shOk(`cd '${base}' && find . -mindepth 1 -type d -printf '%P\\n'`)).stdout.split('\n').filter(Boolean);
        const files = (await shOk(`cd '${base}' && find . -type f -printf '%s\\t%P\\n'`)).stdout.split('\n').filter(Boolean);
        await rm(dest, { recursive: true, force: true });
        await mkdir(dest, { recursive: true });
        for (const d of dirs) await mkdir(join(dest, d), { recursive: true });
        const zeros = Buffer.alloc(1 << 16);
        for (const line of files) {
          const tab = line.indexOf('\t');
          const size = Number(line.slice(0, tab));
          await writeFile(join(dest, line.slice(tab + 1)), zeros.subarray(0, Math.min(size, zeros.length)));
        }
        log(`  local copy: ${dirs.length} folders, ${files.length} files`);
      };
      for (let i = 0; i < s.runs; i++) {
        for (const [row, cmd] of [[lsRow, 'ls -lR'], [findRow, 'find']] as Array<[Row, string]>) {
          const onMount = async (): Promise<void> => {
            const res = await onColdMount(row, async (m) => {
              const r = await sh(`${cmd} '${m}/${MOUNT_PATHS.tree}' | wc -l`);
              if (!localReady && r.code === 0) {
                await makeLocal(`${m}/${MOUNT_PATHS.tree}`, local); // after timing, on the then-warm mount
                localReady = true;
              }
              return r;
            });
            row.mount.push(res.r.ms);
            row.requests!.push(res.requests);
            (row.extra!['requestKinds'] as unknown[]).push(res.kinds);
            (row.extra!['lines'] as unknown[]).push({ mount: Number(res.r.stdout.trim()) });
          };
          const onLocal = async (): Promise<void> => {
            const r = await cold(`cd '${dirname(local)}' && ${cmd} '${local}' | wc -l`);
            row.baseline.push(r.ms);
            (row.extra!['lines'] as unknown[]).push({ local: Number(r.stdout.trim()) });
          };
          // the local copy is made from the first mount run
          if (!localReady) {
            await onMount();
            await onLocal();
          } else await pair(i, onMount, onLocal);
          log(`  ${row.id} run ${i + 1}: mount ${fmtS(row.mount.at(-1)!)} (${row.requests!.at(-1)} requests: ${JSON.stringify((row.extra!['requestKinds'] as unknown[]).at(-1))}), local ${fmtS(row.baseline.at(-1)!)}`);
        }
      }
      // the binding's own cost for the same walk: the same tree (names, sizes) served from memory
      const memRows: Row[] = [];
      for (const [id, cmd] of [['d3', 'ls -lR'], ['d4', 'find']] as const) {
        const row: Row = { id, title: `${cmd} ${nFiles} files from memory (binding ceiling)`, mountLabel: `${cmd} on an in-memory FsOps`, baselineLabel: '', mount: [], baseline: [], ratioKind: 'time' };
        for (let i = 0; i < s.runs; i++) {
          const r = await onMemMount('tree', (m) => sh(`${cmd} '${m}/experiment' | wc -l`));
          row.mount.push(r.ms);
        }
        log(`  ${id}: in-memory ${cmd} ${row.mount.map(fmtS).join(', ')}`);
        memRows.push(row);
      }
      // A whole project walked: one experiment after another, each a round trip of listings.
      const walkRow: Row = {
        id: 'd5', title: `find over a project of ${WALK.subjects} subjects × ${WALK.experimentsPerSubject} experiments vs local disk`,
        mountLabel: 'find on the mount', baselineLabel: 'find on a local copy', mount: [], baseline: [], ratioKind: 'time',
        requests: [], extra: { requestKinds: [] as unknown[] },
      };
      const walkLocal = join(work, 'd-local', 'walk');
      let walkLocalReady = false;
      for (let i = 0; i < s.runs; i++) {
        const onMount = async (): Promise<void> => {
          const res = await onColdMount(walkRow, async (m) => {
            const r = await sh(`find '${m}/${MOUNT_PATHS.walk}' | wc -l`);
            if (!walkLocalReady && r.code === 0) {
              await makeLocal(`${m}/${MOUNT_PATHS.walk}`, walkLocal);
              walkLocalReady = true;
            }
            return r;
          });
          walkRow.mount.push(res.r.ms);
          walkRow.requests!.push(res.requests);
          (walkRow.extra!['requestKinds'] as unknown[]).push(res.kinds);
        };
        const onLocal = async (): Promise<void> => {
          walkRow.baseline.push((await cold(`find '${walkLocal}' | wc -l`)).ms);
        };
        if (!walkLocalReady) {
          await onMount();
          await onLocal();
        } else await pair(i, onMount, onLocal);
        log(`  d5 run ${i + 1}: mount ${fmtS(walkRow.mount.at(-1)!)} (${walkRow.requests!.at(-1)} requests), local ${fmtS(walkRow.baseline.at(-1)!)}`);
      }
      rows.push(lsRow, findRow, ...memRows, walkRow);
    }

    // ------------------------------------------------------------------ e) upload
    if (s.only.has('e')) {
      const bytes = s.sizes.uploadBytes;
      log(`\ne) upload of a ${MiB(bytes)} file, ${s.latencyMs} ms/request`);
      const src = join(work, 'upload.bin');
      await pipeline(streamFor('xnatfs-bench/upload', bytes), createWriteStream(src));
      const row: Row = {
        id: 'e1', title: `cp ${MiB(bytes)} into the mount vs curl PUT`, mountLabel: 'cp into …/files/ (returns after the upload)', baselineLabel: 'curl -X PUT -F file=@…',
        mount: [], baseline: [], bytes, ratioKind: 'throughput', requests: [], extra: { requestKinds: [] as unknown[] },
      };
      const ceiling: Row = { id: 'e2', title: `cp ${MiB(bytes)} into memory (binding ceiling)`, mountLabel: 'cp into an in-memory FsOps', baselineLabel: '', mount: [], baseline: [], bytes, ratioKind: 'throughput' };
      const del = (name: string): Promise<RunResult> => sh(`curl -sSf ${auth} -X DELETE -o /dev/null '${url}${REST_PATHS.upload(name)}'`);
      for (let i = 0; i < s.runs; i++) {
        await pair(i, async () => {
          const name = `up-mount-${i}.bin`;
          const res = await onColdMount(row, async (m) => {
            const r = await sh(`cp '${src}' '${m}/${MOUNT_PATHS.upload}/${name}'`);
            return r;
          });
          row.mount.push(res.r.ms);
          row.requests!.push(res.requests);
          (row.extra!['requestKinds'] as unknown[]).push(res.kinds);
          await del(name);
        }, async () => {
          const name = `up-curl-${i}.bin`;
          const r = await cold(`curl -sSf ${auth} -X PUT -F 'file=@${src}' -o /dev/null '${url}${REST_PATHS.upload(name)}?overwrite=true'`);
          row.baseline.push(r.ms);
          await del(name);
        });
        const r = await onMemMount('empty', (m) => sh(`cp '${src}' '${m}/up.bin'`));
        ceiling.mount.push(r.ms);
        log(`  run ${i + 1}: mount ${fmtS(row.mount.at(-1)!)} = ${(bytes / 1e6 / (row.mount.at(-1)! / 1000)).toFixed(0)} MB/s (${row.requests!.at(-1)} requests), curl ${fmtS(row.baseline.at(-1)!)} = ${(bytes / 1e6 / (row.baseline.at(-1)! / 1000)).toFixed(0)} MB/s, in-memory ${fmtS(r.ms)} = ${(bytes / 1e6 / (r.ms / 1000)).toFixed(0)} MB/s`);
      }
      rows.push(row, ceiling);
    }
  } finally {
    await emu.close().catch(() => undefined);
    await cleanup(); // also removes the scratch folder unless --keep-work
  }

  // ------------------------------------------------------------------ report
  const settingsLine = `latency ${s.latencyMs} ms/request, c1 cap ${(s.capBytesPerSec / 1e6).toFixed(0)} MB/s/response, ${s.runs} run(s), page cache ${cachesDropped() ? 'dropped' : 'NOT dropped'} before each timed command`;
  const machineLine = `${info.cpu}, ${info.memory} RAM, Linux ${info.kernel}, Node ${info.node}, dcm2niix ${info.dcm2niix}`;
  const table = textTable(rows);
  const startMed = median(mountStarts);
  process.stdout.write(`\n${table}\n\n`);
  process.stdout.write(`machine: ${machineLine}\nsettings: ${settingsLine}\ncode: commit ${info.commit}${info.srcChanges !== '0' ? ` + ${info.srcChanges} uncommitted change(s) in src/` : ''}\n`);
  process.stdout.write(`times in seconds (min / median over runs); ratio = mount time ÷ baseline time for time rows, mount MB/s ÷ baseline MB/s for rows with MB/s; verdict on the median ratio; req = HTTP requests the mount made (median); mount start-up (not timed) median ${fmtS(startMed)}\n`);
  await mkdir(out, { recursive: true });
  const results = {
    machine: info,
    settings: { ...s, only: [...s.only], out: undefined, pageCacheDropped: cachesDropped() ?? false },
    mountStartMs: mountStarts,
    rows: rows.map((r) => ({ ...r, ratios: ratios(r), verdict: verdict(r) })),
  };
  await writeFile(join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  const svg = svgChart(rows.filter((r) => r.baseline.length), `${settingsLine.replace(/, page cache.*/, '')} — ${info.cpu}`);
  await writeFile(join(out, 'bench.svg'), svg + '\n');
  // A PNG too, with whichever SVG rasteriser is really installed (none is required).
  const png = join(out, 'bench.png');
  await rm(png, { force: true });
  for (const [probe, cmd] of [
    ['/usr/bin/convert -version', `/usr/bin/convert -density 96 '${join(out, 'bench.svg')}' '${png}'`],
    ['command -v rsvg-convert', `rsvg-convert -o '${png}' '${join(out, 'bench.svg')}'`],
    ['command -v gdk-pixbuf-thumbnailer', `gdk-pixbuf-thumbnailer -s 1000 '${join(out, 'bench.svg')}' '${png}'`],
  ] as const) {
    if ((await sh(`${probe} >/dev/null 2>&1`)).code !== 0) continue;
    if ((await sh(cmd)).code === 0) {
      log(`chart: ${png} (${cmd.split(' ')[0]})`);
      break;
    }
  }
  const md = [
    '## Performance',
    '',
    `Measured with \`scripts/bench\` (\`npm run bench\`) against the bundled XNAT emulator on ${machineLine}; ${settingsLine}. ` +
      'Each repetition starts a fresh `xnatfs mount` process with an empty cache; the emulator, the mount and the benchmark driver are separate processes.',
    '',
    markdownTable(rows),
    '',
    'How to read it: times are seconds, min / median over the runs. *ratio* is computed per run and is mount time ÷ baseline time for ' +
      'time rows (lower is better) and mount MB/s ÷ baseline MB/s for rows with MB/s (higher is better); the verdict uses the median. ' +
      '*req* is the number of HTTP requests the mount made (median). Baselines: a) `curl …/files?format=zip`, `unzip`, `dcm2niix` of the ' +
      'unzipped folder; b) the same `find -type f -exec cat {} +` over the same files served from memory through the FUSE adapter itself ' +
      '(the floor); b2) `curl` of the folder\'s zip + `unzip` (files not read afterwards); c) `curl -o /dev/null` of the same file; ' +
      'd) the same command on a local-disk copy of the tree (same names and sizes); e) `curl -X PUT -F file=@…`. ' +
      'The *binding ceiling* rows serve data from memory through `mountFuse` with the options `xnatfs mount` uses (its readdir also ' +
      'returns attributes, so `find` gets d_type). ' +
      `Fixtures: a ${s.sizes.dicomSlices}-slice ${s.sizes.dicomMatrix}×${s.sizes.dicomMatrix} MR series (${(s.sizes.dicomSlices * (s.sizes.dicomMatrix ** 2 * 2 + 1200) / 1e6).toFixed(1)} MB), ` +
      `${s.sizes.smallCount} files of ${s.sizes.smallMin / 1024}–${s.sizes.smallMax / 1024} KiB, a ${MiB(s.sizes.largeBytes)} file, ` +
      `an experiment of ${s.sizes.treeScans} scans × ${s.sizes.treeDicomPerScan + s.sizes.treeSnapshotsPerScan} files, ` +
      `a project of ${WALK.subjects} subjects × ${WALK.experimentsPerSubject} experiments × ${WALK.scans} scans × ${WALK.filesPerScan} files, a ${MiB(s.sizes.uploadBytes)} upload. ` +
      `Code: commit ${info.commit}.`,
    '',
    '![benchmark ratios](bench-out/bench.svg)',
    '',
  ].join('\n');
  await writeFile(join(out, 'performance.md'), md);
  log(`results: ${join(out, 'results.json')}, ${join(out, 'bench.svg')}, ${join(out, 'performance.md')}`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    if (interrupted()) return; // the signal handler cleans up and exits
    console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanup().catch(() => undefined);
    process.exitCode = 2;
  },
);
