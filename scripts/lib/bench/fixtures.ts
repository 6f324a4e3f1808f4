// Deterministic benchmark fixtures: what the emulator serves (project BENCH) and what the
// in-memory FUSE floor serves, generated from the same functions so both sides hold the same bytes.
import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { mrSlice, type SeriesSpec } from '../../../src/emulator/dicom.js';
import { startEmulator } from '../../../src/emulator/index.js';

export interface BenchSizes {
  /** a) one DICOM series */
  dicomSlices: number;
  dicomMatrix: number; // rows = columns
  /** b) one folder of small files */
  smallCount: number;
  smallMin: number;
  smallMax: number;
  /** c) one large file */
  largeBytes: number;
  /** d) one experiment with many files */
  treeScans: number;
  treeDicomPerScan: number;
  treeSnapshotsPerScan: number;
  /** e) upload */
  uploadBytes: number;
}

export const PROJECT = 'BENCH';
export const SERIES = { subject: 'S01', experiment: 'S01_MR1', scan: { id: '1', type: 'T1w' }, resource: 'DICOM' };
export const TREE = { subject: 'S02', experiment: 'S02_MR1' };
export const SMALL_RESOURCE = 'SMALL';
export const LARGE_RESOURCE = 'LARGE';
export const LARGE_NAME = 'large.bin';
export const UPLOAD_RESOURCE = 'UPLOAD';
/** d5) a project that `find` walks: subjects, each with experiments of a few scans of a few files. */
export const WALK = { project: 'WALK', subjects: 40, experimentsPerSubject: 2, scans: 3, filesPerScan: 3 };

/** Paths as the mount shows them, relative to the mount point. */
export const MOUNT_PATHS = {
  series: `projects/${PROJECT}/subjects/${SERIES.subject}/experiments/${SERIES.experiment}/scans/${SERIES.scan.id}-${SERIES.scan.type}/resources/${SERIES.resource}/files`,
  small: `projects/${PROJECT}/resources/${SMALL_RESOURCE}/files`,
  large: `projects/${PROJECT}/resources/${LARGE_RESOURCE}/files/${LARGE_NAME}`,
  tree: `projects/${PROJECT}/subjects/${TREE.subject}/experiments/${TREE.experiment}`,
  upload: `projects/${PROJECT}/resources/${UPLOAD_RESOURCE}/files`,
  walk: `projects/${WALK.project}`,
};

/** REST paths (under the server URL). */
export const REST_PATHS = {
  seriesZip: `/data/projects/${PROJECT}/subjects/${SERIES.subject}/experiments/${SERIES.experiment}/scans/${SERIES.scan.id}/resources/${SERIES.resource}/files?format=zip`,
  smallZip: `/data/projects/${PROJECT}/resources/${SMALL_RESOURCE}/files?format=zip`,
  large: `/data/projects/${PROJECT}/resources/${LARGE_RESOURCE}/files/${LARGE_NAME}`,
  upload: (name: string) => `/data/projects/${PROJECT}/resources/${UPLOAD_RESOURCE}/files/${encodeURIComponent(name)}`,
};

const keyOf = (seed: string): { key: Buffer; iv: Buffer } => {
  const h = createHash('sha256').update(seed).digest();
  return { key: h.subarray(0, 16), iv: h.subarray(16, 32) };
};

/** `n` pseudo-random (incompressible) bytes, the same for the same seed. */
export function bytesFor(seed: string, n: number): Buffer {
  const { key, iv } = keyOf(seed);
  const c = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

/** The same bytes as bytesFor(seed, n), as a stream of 1 MiB chunks (for files too big to hold). */
export function streamFor(seed: string, n: number): Readable {
  const { key, iv } = keyOf(seed);
  const c = createCipheriv('aes-128-ctr', key, iv);
  const zeros = Buffer.alloc(1 << 20);
  let left = n;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const k = Math.min(left, zeros.length);
      left -= k;
      this.push(c.update(k === zeros.length ? zeros : zeros.subarray(0, k)));
    },
  });
}

export function largeSeed(): string {
  return 'xnatfs-bench/large';
}

/** b) names and sizes of the small files. */
export function smallFiles(s: BenchSizes): Array<{ name: string; size: number; seed: string }> {
  const out: Array<{ name: string; size: number; seed: string }> = [];
  for (let i = 0; i < s.smallCount; i++) {
    const h = createHash('sha256').update(`small/${i}`).digest().readUInt32LE(0);
    const size = s.smallMin + (h % (s.smallMax - s.smallMin + 1));
    out.push({ name: `f${String(i).padStart(5, '0')}.dat`, size, seed: `xnatfs-bench/small/${i}` });
  }
  return out;
}

export function smallBytes(s: BenchSizes): number {
  return smallFiles(s).reduce((a, f) => a + f.size, 0);
}

/** a) the DICOM series dcm2niix converts. */
export function seriesSpec(s: BenchSizes): SeriesSpec {
  return {
    patientName: 'BENCH^SERIES',
    patientId: SERIES.subject,
    studyKey: 'xnatfs-bench/study',
    studyDescription: 'xnatfs benchmark',
    accessionNumber: 'BENCH0001',
    seriesKey: 'xnatfs-bench/series',
    seriesNumber: 1,
    seriesDescription: SERIES.scan.type,
    rows: s.dicomMatrix,
    columns: s.dicomMatrix,
    slices: s.dicomSlices,
    pixelSpacing: 1.2,
    sliceThickness: 1.5,
    echoTime: 2.98,
    repetitionTime: 2300,
    flipAngle: 9,
    mrAcquisitionType: '3D',
    phantom: { rx: 0.8, ry: 0.85, rz: 0.85, level: 1300 },
    date: '20240115',
    time: '100000',
  };
}

export const sliceName = (i: number): string => `slice-${String(i + 1).padStart(4, '0')}.dcm`;

/** d) the files of the 10,000-file experiment. */
export function treeFiles(s: BenchSizes): Array<{ scan: { id: string; type: string }; resource: string; name: string; size: number }> {
  const out: Array<{ scan: { id: string; type: string }; resource: string; name: string; size: number }> = [];
  for (let k = 0; k < s.treeScans; k++) {
    const scan = { id: String(k + 1), type: `run${k + 1}` };
    for (let i = 0; i < s.treeDicomPerScan; i++) out.push({ scan, resource: 'DICOM', name: `img-${String(i + 1).padStart(5, '0')}.dcm`, size: 512 + ((i * 37 + k * 11) % 512) });
    for (let i = 0; i < s.treeSnapshotsPerScan; i++) out.push({ scan, resource: 'SNAPSHOTS', name: `snap-${String(i + 1).padStart(4, '0')}.png`, size: 256 + ((i * 13) % 256) });
  }
  return out;
}

/** d5) every file of the WALK project. */
export function walkFiles(): Array<{ subject: string; experiment: string; scan: { id: string; type: string }; name: string; size: number }> {
  const out: Array<{ subject: string; experiment: string; scan: { id: string; type: string }; name: string; size: number }> = [];
  for (let i = 1; i <= WALK.subjects; i++) {
    const subject = `W${String(i).padStart(3, '0')}`;
    for (let e = 1; e <= WALK.experimentsPerSubject; e++) {
      for (let k = 1; k <= WALK.scans; k++) {
        for (let f = 1; f <= WALK.filesPerScan; f++) out.push({ subject, experiment: `${subject}_MR${e}`, scan: { id: String(k), type: 'T1w' }, name: `f${f}.dcm`, size: 100 + f });
      }
    }
  }
  return out;
}

export function treePaths(s: BenchSizes): Array<{ rel: string; size: number }> {
  return treeFiles(s).map((f) => ({ rel: `scans/${f.scan.id}-${f.scan.type}/resources/${f.resource}/files/${f.name}`, size: f.size }));
}

/**
 * Writes the fixtures into an emulator data directory, unless `dataDir` already holds them for
 * the same sizes (a marker file records them). Returns whether anything was generated.
 */
export async function ensureFixtures(dataDir: string, s: BenchSizes, log: (m: string) => void): Promise<boolean> {
  const marker = join(dataDir, '..', `${dataDir.split('/').pop()}.done.json`);
  const want = JSON.stringify({ v: 3, sizes: { ...s, uploadBytes: 0 }, walk: WALK });
  if ((await readFile(marker, 'utf8').catch(() => '')) === want) return false;
  await rm(dataDir, { recursive: true, force: true });
  await rm(marker, { force: true });
  await mkdir(dataDir, { recursive: true });
  const emu = await startEmulator({ dataDir, seed: 'none', port: 0 });
  try {
    const t0 = Date.now();
    const spec = seriesSpec(s);
    for (let i = 0; i < s.dicomSlices; i++) {
      await emu.addFile({ project: PROJECT, subject: SERIES.subject, experiment: SERIES.experiment, scan: SERIES.scan, resource: SERIES.resource, path: sliceName(i), data: mrSlice(spec, i) });
    }
    log(`  a) ${s.dicomSlices} DICOM slices`);
    for (const f of smallFiles(s)) {
      await emu.addFile({ project: PROJECT, resource: SMALL_RESOURCE, path: f.name, data: bytesFor(f.seed, f.size) });
    }
    log(`  b) ${s.smallCount} small files`);
    await emu.addFile({ project: PROJECT, resource: LARGE_RESOURCE, path: LARGE_NAME, data: () => streamFor(largeSeed(), s.largeBytes) });
    log(`  c) ${s.largeBytes} byte file`);
    let n = 0;
    for (const f of treeFiles(s)) {
      await emu.addFile({ project: PROJECT, subject: TREE.subject, experiment: TREE.experiment, scan: f.scan, resource: f.resource, path: f.name, data: bytesFor(`tree/${n++}`, f.size) });
    }
    log(`  d) ${n} files in one experiment`);
    const walk = walkFiles();
    for (const f of walk) {
      await emu.addFile({ project: WALK.project, subject: f.subject, experiment: f.experiment, scan: f.scan, resource: 'DICOM', path: f.name, data: bytesFor(`walk/${f.experiment}/${f.scan.id}/${f.name}`, f.size) });
    }
    log(`  d5) ${walk.length} files in a project of ${WALK.subjects} subjects`);
    await emu.addFile({ project: PROJECT, resource: UPLOAD_RESOURCE, path: 'README.txt', data: Buffer.from('uploads land here\n') });
    log(`  fixtures written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await emu.close();
  }
  await writeFile(marker, want);
  return true;
}
