import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_ARCHIVE, demoFiles, startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { rows } from './helpers.js';

const run = promisify(execFile);
const DCM2NIIX = '/usr/bin/dcm2niix';
let emu: RunningEmulator;
let work: string;
beforeAll(async () => {
  emu = await startEmulator();
  work = await mkdtemp(path.join(tmpdir(), 'xnatfs-emu-dcm-'));
});
afterAll(async () => {
  await emu?.close();
  await rm(work, { recursive: true, force: true });
});

const series = DEMO_ARCHIVE.projects.flatMap((p) =>
  p.subjects.flatMap((s) => s.experiments.flatMap((e) => e.scans.map((sc) => ({ p: p.id, s: s.label, e: e.label, sc })))),
);

describe('demo archive', () => {
  it('is byte-for-byte what demoFiles() describes, with matching listings', async () => {
    const files = demoFiles();
    expect(files.length).toBe(3 + 96 + 1 + 24 + 20 + 16 + 4 + 2 + 1 + 6 + 1);
    for (const f of files) {
      const p = emu.storedFilePath(f.project, f.subject, f.experiment, f.scan, f.resource, f.path);
      if (f.assessor) continue; // storedFilePath addresses scan/experiment level; assessor files are checked via HTTP below
      expect(p, `${f.resource}/${f.path}`).not.toBeNull();
      const buf = await readFile(p!);
      expect(createHash('md5').update(buf).digest('hex')).toBe(f.digest);
    }
    const stats = await rows(emu, '/data/experiments/XNAT_E00001/assessors/SUBJ01_MR1_FS/resources/STATS/files');
    expect(stats[0]!.digest).toBe(files.find((f) => f.assessor)!.digest);
  });

  it('is deterministic across seeds', async () => {
    const other = await startEmulator();
    try {
      for (const f of demoFiles().filter((x) => !x.assessor).slice(0, 40)) {
        const a = await readFile(emu.storedFilePath(f.project, f.subject, f.experiment, f.scan, f.resource, f.path)!);
        const b = await readFile(other.storedFilePath(f.project, f.subject, f.experiment, f.scan, f.resource, f.path)!);
        expect(a.equals(b)).toBe(true);
      }
    } finally {
      await other.close();
    }
    expect(existsSync(other.dataDir)).toBe(false); // a temp dataDir is removed on close
  });

  it('writes valid Part-10 headers', () => {
    const f = demoFiles().find((x) => x.resourceId === '1005')!;
    expect(f.data.subarray(128, 132).toString('latin1')).toBe('DICM');
    expect(f.data.includes(Buffer.from('1.2.840.10008.1.2.1\0', 'latin1'))).toBe(true);
    expect(f.data.includes(Buffer.from('1.2.840.10008.5.1.4.1.1.4\0', 'latin1'))).toBe(true);
    const t1 = demoFiles().filter((x) => x.resourceId === '1005');
    expect(t1.reduce((n, x) => n + x.size, 0)).toBeGreaterThan(3_000_000);
  });

  const haveDcm2niix = existsSync(DCM2NIIX);
  if (!haveDcm2niix && process.env.CI !== 'true') {
    console.warn(`SKIPPING dcm2niix conversion test: ${DCM2NIIX} not found`);
  }
  it.skipIf(!haveDcm2niix && process.env.CI !== 'true')('dcm2niix converts every series to one NIfTI without warnings', async () => {
    for (const { p, s, e, sc } of series) {
      const first = sc.resources[0]!.files[0]!;
      const dir = path.dirname(emu.storedFilePath(p, s, e, sc.id, 'DICOM', first)!);
      const out = await mkdtemp(path.join(work, `${e}-${sc.id}-`));
      const { stdout, stderr } = await run(DCM2NIIX, ['-o', out, '-f', '%s_%d', dir]);
      const log = stdout + stderr;
      expect(log, `${e} scan ${sc.id}`).not.toMatch(/warning|error/i);
      const niis = (await readdir(out)).filter((n) => n.endsWith('.nii'));
      expect(niis, `${e} scan ${sc.id}`).toHaveLength(1);
      const nii = await readFile(path.join(out, niis[0]!));
      // NIfTI-1 header: dims = [3, columns, rows, slices]
      expect(nii.readInt16LE(40)).toBe(3);
      expect([nii.readInt16LE(42), nii.readInt16LE(44), nii.readInt16LE(46)]).toEqual([sc.series.columns, sc.series.rows, sc.series.slices]);
    }
  });
});
