// The demo archive: a deterministic, byte-for-byte reproducible XNAT with three projects.
// DEMO_ARCHIVE describes it (ids, labels, accession ids, resource ids, file names); demoFiles()
// yields every file with its bytes, so tests can compute sizes and digests without a server.
import { createHash } from 'node:crypto';
import { crc32, deflateSync } from 'node:zlib';
import { mrSlice, type SeriesSpec } from './dicom.js';
import type { ArchiveStore, OwnerNode } from './store.js';

export const DEMO_DATE = '2024-01-15';
export const DEMO_INSERT_DATE = '2024-01-15 10:00:00.0';
/** mtime of every seeded file (so Last-Modified is reproducible too). */
export const DEMO_MTIME = new Date('2024-01-15T10:00:00.000Z');

export interface DemoSeries {
  rows: number;
  columns: number;
  slices: number;
  pixelSpacing: number;
  sliceThickness: number;
}
export interface DemoResource {
  label: string;
  /** xnat_abstractresource_id as XNAT lists it. */
  id: string;
  format: string;
  content: string;
  /** Relative paths inside files/, in catalogue order. */
  files: string[];
}
export interface DemoScan {
  id: string;
  type: string;
  /** Zip/mount folder name: `${id}-${type with non-word chars → _}`. */
  folder: string;
  series: DemoSeries;
  resources: DemoResource[];
}
export interface DemoAssessor {
  id: string;
  label: string;
  xsiType: string;
  resources: DemoResource[];
}
export interface DemoExperiment {
  id: string;
  label: string;
  xsiType: string;
  date: string;
  scans: DemoScan[];
  assessors: DemoAssessor[];
  resources: DemoResource[];
}
export interface DemoSubject {
  id: string;
  label: string;
  resources: DemoResource[];
  experiments: DemoExperiment[];
}
export interface DemoProject {
  id: string;
  name: string;
  description: string;
  resources: DemoResource[];
  subjects: DemoSubject[];
}

export const DEMO_USERS = [
  { name: 'demo', password: 'demo', projects: '*' as const },
  { name: 'reader', password: 'reader', projects: ['OPEN'] },
];

const dicomNames = (exp: string, scan: string, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${exp}.MR.${scan}.${String(i + 1).padStart(4, '0')}.dcm`);
const folder = (id: string, type: string): string => `${id}-${type.replace(/\W/g, '_')}`;

function scan(exp: string, id: string, type: string, series: DemoSeries, resId: string, extra: DemoResource[] = []): DemoScan {
  return {
    id,
    type,
    folder: folder(id, type),
    series,
    resources: [{ label: 'DICOM', id: resId, format: 'DICOM', content: 'RAW', files: dicomNames(exp, id, series.slices) }, ...extra],
  };
}

/** Text content of the small non-DICOM demo files, by "<resource id>/<path>". */
const TEXT_FILES: Record<string, string> = {
  '1001/README.txt': 'Demo MR study protocols.\nSee mri/protocol.pdf for the acquisition protocol.\n',
  '1003/notes with spaces.txt': 'A note whose name has spaces.\n',
  '1003/hash#1.txt': 'A note whose name has a hash sign.\n',
  '1003/100%.txt': 'A note whose name has a percent sign.\n',
  '1003/a+b.txt': 'A note whose name has a plus sign.\n',
  '1003/ünïcode-日本.txt': 'A note whose name is not ASCII.\n',
  '1003/sub dir/inner#file.txt': 'A note inside a folder whose name has a space.\n',
  '1008/aseg.stats':
    '# Title Segmentation Statistics\n# generating_program mri_segstats (emulated)\n' +
    '# ColHeaders  Index SegId NVoxels Volume_mm3 StructName\n' +
    '  1   4   5023   5023.0  Left-Lateral-Ventricle\n  2  17   4211   4211.0  Left-Hippocampus\n  3  53   4302   4302.0  Right-Hippocampus\n',
};

export const DEMO_ARCHIVE: { users: typeof DEMO_USERS; projects: DemoProject[] } = {
  users: DEMO_USERS,
  projects: [
    {
      id: 'DEMO',
      name: 'Demo MR study',
      description: 'Synthetic MR phantom sessions served by the xnatfs emulator',
      resources: [{ label: 'protocols', id: '1001', format: '', content: '', files: ['mri/protocol.pdf', 'README.txt'] }],
      subjects: [
        {
          id: 'XNAT_S00001',
          label: 'SUBJ01',
          resources: [{ label: 'CONSENT', id: '1002', format: 'PDF', content: '', files: ['consent_form.pdf'] }],
          experiments: [
            {
              id: 'XNAT_E00001',
              label: 'SUBJ01_MR1',
              xsiType: 'xnat:mrSessionData',
              date: DEMO_DATE,
              resources: [
                {
                  label: 'NOTES',
                  id: '1003',
                  format: 'TXT',
                  content: '',
                  files: ['notes with spaces.txt', 'hash#1.txt', '100%.txt', 'a+b.txt', 'ünïcode-日本.txt', 'sub dir/inner#file.txt'],
                },
              ],
              scans: [
                scan('SUBJ01_MR1', '1', 'Localizer', { rows: 64, columns: 64, slices: 3, pixelSpacing: 4, sliceThickness: 10 }, '1004'),
                scan('SUBJ01_MR1', '4', 'Ax 3D T1', { rows: 128, columns: 128, slices: 96, pixelSpacing: 2, sliceThickness: 1.8 }, '1005', [
                  { label: 'SNAPSHOTS', id: '1006', format: 'PNG', content: 'SNAPSHOTS', files: ['4_qc.png'] },
                ]),
                scan('SUBJ01_MR1', '6', 'fMRI rest (run 1)', { rows: 64, columns: 64, slices: 24, pixelSpacing: 3.5, sliceThickness: 3.5 }, '1007'),
              ],
              assessors: [
                {
                  id: 'XNAT_E00002',
                  label: 'SUBJ01_MR1_FS',
                  xsiType: 'fs:fsData',
                  resources: [{ label: 'STATS', id: '1008', format: 'TXT', content: 'STATS', files: ['aseg.stats'] }],
                },
              ],
            },
          ],
        },
        {
          id: 'XNAT_S00002',
          label: 'SUBJ02',
          resources: [],
          experiments: [
            {
              id: 'XNAT_E00003',
              label: 'SUBJ02_MR1',
              xsiType: 'xnat:mrSessionData',
              date: DEMO_DATE,
              resources: [],
              scans: [scan('SUBJ02_MR1', '2', 'T2 FLAIR', { rows: 128, columns: 128, slices: 20, pixelSpacing: 1.8, sliceThickness: 5 }, '1009')],
              assessors: [],
            },
          ],
        },
      ],
    },
    {
      id: 'OPEN',
      name: 'Open dataset',
      description: 'Readable by every demo user',
      resources: [],
      subjects: [
        {
          id: 'XNAT_S00003',
          label: 'OPEN01',
          resources: [],
          experiments: [
            {
              id: 'XNAT_E00004',
              label: 'OPEN01_MR1',
              xsiType: 'xnat:mrSessionData',
              date: DEMO_DATE,
              resources: [],
              scans: [scan('OPEN01_MR1', '3', 'T1w', { rows: 96, columns: 96, slices: 16, pixelSpacing: 2.4, sliceThickness: 3 }, '1010')],
              assessors: [],
            },
          ],
        },
      ],
    },
    {
      id: 'PRIVATE',
      name: 'Private study',
      description: 'Only the demo user can see this project',
      resources: [],
      subjects: [
        {
          id: 'XNAT_S00004',
          label: 'PRIV01',
          resources: [],
          experiments: [
            {
              id: 'XNAT_E00005',
              label: 'PRIV01_MR1',
              xsiType: 'xnat:mrSessionData',
              date: DEMO_DATE,
              resources: [],
              scans: [scan('PRIV01_MR1', '1', 'T1', { rows: 32, columns: 32, slices: 4, pixelSpacing: 6, sliceThickness: 6 }, '1011')],
              assessors: [],
            },
          ],
        },
      ],
    },
  ],
};

export interface DemoFile {
  project: string;
  subject: string | null;
  experiment: string | null;
  scan: string | null;
  assessor: string | null;
  resource: string;
  resourceId: string;
  path: string;
  size: number;
  digest: string;
  data: Buffer;
}

// ------------------------------------------------------------------ content generators

function png(width: number, height: number, gray: (x: number, y: number) => number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grayscale
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) raw[y * (width + 1) + 1 + x] = gray(x, y);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

function fakePdf(title: string): Buffer {
  return Buffer.from(
    `%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n` +
      `% ${title}\ntrailer << /Root 1 0 R >>\n%%EOF\n`,
    'latin1',
  );
}

function seriesSpec(p: DemoProject, subj: DemoSubject, e: DemoExperiment, sc: DemoScan, seriesIndex: number): SeriesSpec {
  const seed = Number(sc.id) + seriesIndex;
  return {
    patientName: `${subj.label}^${p.id}`,
    patientId: subj.label,
    studyKey: `xnatfs-demo/${p.id}/${e.label}`,
    studyDescription: p.name,
    accessionNumber: e.id,
    seriesKey: `xnatfs-demo/${p.id}/${e.label}/${sc.id}`,
    seriesNumber: Number(sc.id),
    seriesDescription: sc.type,
    rows: sc.series.rows,
    columns: sc.series.columns,
    slices: sc.series.slices,
    pixelSpacing: sc.series.pixelSpacing,
    sliceThickness: sc.series.sliceThickness,
    echoTime: sc.type.includes('T2') ? 90 : sc.type.startsWith('fMRI') ? 30 : 2.98,
    repetitionTime: sc.type.includes('T2') ? 9000 : sc.type.startsWith('fMRI') ? 2000 : 2300,
    flipAngle: sc.type.startsWith('fMRI') ? 77 : 9,
    mrAcquisitionType: sc.series.slices >= 64 ? '3D' : '2D',
    phantom: { rx: 0.8 - (seed % 3) * 0.05, ry: 0.9 - (seed % 2) * 0.05, rz: 0.85, level: 1200 + (seed % 5) * 100 },
    date: DEMO_DATE.replace(/-/g, ''),
    time: '100000',
  };
}

function fileBytes(res: DemoResource, rel: string, ctx: { p: DemoProject; subj?: DemoSubject; e?: DemoExperiment; sc?: DemoScan; index: number }): Buffer {
  const text = TEXT_FILES[`${res.id}/${rel}`];
  if (text !== undefined) return Buffer.from(text, 'utf8');
  if (res.format === 'DICOM' && ctx.sc && ctx.e && ctx.subj) {
    const i = res.files.indexOf(rel);
    return mrSlice(seriesSpec(ctx.p, ctx.subj, ctx.e, ctx.sc, ctx.index), i);
  }
  if (rel.endsWith('.png')) return png(64, 64, (x, y) => (((x - 32) ** 2 + (y - 32) ** 2 < 26 ** 2 ? 160 : 10) + ((x * 3 + y * 5) % 16)) & 0xff);
  if (rel.endsWith('.pdf')) return fakePdf(`${ctx.p.id} ${res.label} ${rel}`);
  return Buffer.from(`${res.label}/${rel}\n`, 'utf8');
}

let cached: DemoFile[] | null = null;

/** Every file of the demo archive with its bytes (generated once, ~4 MB). */
export function demoFiles(): DemoFile[] {
  if (cached) return cached;
  const out: DemoFile[] = [];
  let index = 0;
  const push = (res: DemoResource, where: Omit<DemoFile, 'resource' | 'resourceId' | 'path' | 'size' | 'digest' | 'data'>, ctx: Parameters<typeof fileBytes>[2]): void => {
    for (const rel of res.files) {
      const data = fileBytes(res, rel, ctx);
      out.push({ ...where, resource: res.label, resourceId: res.id, path: rel, size: data.length, digest: createHash('md5').update(data).digest('hex'), data });
    }
  };
  for (const p of DEMO_ARCHIVE.projects) {
    for (const r of p.resources) push(r, { project: p.id, subject: null, experiment: null, scan: null, assessor: null }, { p, index });
    for (const subj of p.subjects) {
      for (const r of subj.resources) push(r, { project: p.id, subject: subj.label, experiment: null, scan: null, assessor: null }, { p, subj, index });
      for (const e of subj.experiments) {
        for (const r of e.resources) push(r, { project: p.id, subject: subj.label, experiment: e.label, scan: null, assessor: null }, { p, subj, e, index });
        for (const sc of e.scans) {
          for (const r of sc.resources) push(r, { project: p.id, subject: subj.label, experiment: e.label, scan: sc.id, assessor: null }, { p, subj, e, sc, index });
          index++;
        }
        for (const a of e.assessors) for (const r of a.resources) push(r, { project: p.id, subject: subj.label, experiment: e.label, scan: null, assessor: a.label }, { p, subj, e, index });
      }
    }
  }
  cached = out;
  return out;
}

/** Writes the demo archive into an empty store; ids come out exactly as DEMO_ARCHIVE lists them. */
export async function seedDemo(store: ArchiveStore): Promise<void> {
  const files = demoFiles();
  let fi = 0;
  const check = (what: string, got: string, want: string): void => {
    if (got !== want) throw new Error(`demo seed: ${what} got id ${got}, expected ${want} (seed into an empty directory)`);
  };
  const resources = async (owner: OwnerNode, list: DemoResource[]): Promise<void> => {
    for (const r of list) {
      const node = await store.createResource(owner, r.label, { format: r.format, content: r.content });
      check(`resource ${r.label}`, String(node.id), r.id);
      for (const rel of r.files) {
        const f = files[fi++]!;
        if (f.path !== rel || f.resourceId !== r.id) throw new Error('demo seed: file order mismatch');
        await store.writeBuffer(node, rel, f.data, { overwrite: true, mtime: DEMO_MTIME });
      }
    }
  };
  for (const p of DEMO_ARCHIVE.projects) {
    const pn = await store.ensureProject(p.id, { name: p.name, description: p.description, insertDate: DEMO_INSERT_DATE });
    await resources(pn, p.resources);
    for (const subj of p.subjects) {
      const sn = await store.ensureSubject(pn, subj.label, { insertDate: DEMO_INSERT_DATE, insertUser: 'admin' });
      check(`subject ${subj.label}`, sn.id, subj.id);
      await resources(sn, subj.resources);
      for (const e of subj.experiments) {
        const en = await store.ensureExperiment(sn, e.label, { xsiType: e.xsiType, date: e.date, insertDate: DEMO_INSERT_DATE });
        check(`experiment ${e.label}`, en.id, e.id);
        await resources(en, e.resources);
        for (const sc of e.scans) {
          const scn = await store.ensureScan(en, sc.id, { type: sc.type, seriesDescription: sc.type, frames: String(sc.series.slices) });
          await resources(scn, sc.resources);
        }
        for (const a of e.assessors) {
          const an = await store.ensureAssessor(en, a.label, { xsiType: a.xsiType, date: e.date, insertDate: DEMO_INSERT_DATE });
          check(`assessor ${a.label}`, an.id, a.id);
          await resources(an, a.resources);
        }
      }
    }
  }
}
