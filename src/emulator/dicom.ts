// Minimal DICOM Part-10 writer for synthetic MR series (explicit VR little endian).
// Enough geometry (IPP/IOP/PixelSpacing/SliceThickness/SpacingBetweenSlices) for dcm2niix to stack
// the slices into one volume without warnings.
import { createHash } from 'node:crypto';

export const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';
export const EXPLICIT_VR_LE = '1.2.840.10008.1.2.1';
const IMPLEMENTATION_UID = uidFrom('xnatfs-emulator-implementation');

/** Deterministic UID under the 2.25 (UUID-derived) root. */
export function uidFrom(key: string): string {
  const h = createHash('sha256').update(key).digest();
  const n = BigInt('0x' + h.subarray(0, 16).toString('hex'));
  return '2.25.' + (n === 0n ? 1n : n).toString(10);
}

type Vr = 'AE' | 'CS' | 'DA' | 'DS' | 'IS' | 'LO' | 'PN' | 'SH' | 'TM' | 'UI' | 'US' | 'UL' | 'OB' | 'OW' | 'LT';
interface Element {
  tag: number; // (group << 16) | element
  vr: Vr;
  value: Buffer;
}

const LONG_VRS = new Set<Vr>(['OB', 'OW']);

function str(tag: number, vr: Vr, v: string): Element {
  let b = Buffer.from(v, 'latin1');
  if (b.length % 2) b = Buffer.concat([b, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
  return { tag, vr, value: b };
}
function us(tag: number, v: number): Element {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return { tag, vr: 'US', value: b };
}
function ul(tag: number, v: number): Element {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return { tag, vr: 'UL', value: b };
}
/** Decimal string: at most 16 chars, no exponent for our ranges. */
function ds(n: number): string {
  const s = Number.isInteger(n) ? String(n) : String(Number(n.toFixed(6)));
  return s.length > 16 ? n.toPrecision(10) : s;
}

function encode(elements: Element[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of [...elements].sort((a, b) => a.tag - b.tag)) {
    const long = LONG_VRS.has(e.vr);
    const h = Buffer.alloc(long ? 12 : 8);
    h.writeUInt16LE(e.tag >>> 16, 0);
    h.writeUInt16LE(e.tag & 0xffff, 2);
    h.write(e.vr, 4, 'latin1');
    if (long) h.writeUInt32LE(e.value.length, 8);
    else h.writeUInt16LE(e.value.length, 6);
    parts.push(h, e.value);
  }
  return Buffer.concat(parts);
}

export interface SeriesSpec {
  patientName: string;
  patientId: string;
  studyKey: string; // seeds StudyInstanceUID
  studyDescription: string;
  accessionNumber: string;
  seriesKey: string; // seeds Series/SOP UIDs
  seriesNumber: number;
  seriesDescription: string;
  rows: number;
  columns: number;
  slices: number;
  pixelSpacing: number; // mm, square pixels
  sliceThickness: number; // mm, slices are contiguous
  echoTime: number;
  repetitionTime: number;
  flipAngle: number;
  mrAcquisitionType: '2D' | '3D';
  /** Shapes the phantom so series differ. */
  phantom: { rx: number; ry: number; rz: number; level: number };
  date: string; // YYYYMMDD
  time: string; // HHMMSS
}

/** One slice of an ellipsoid phantom (outer shell, inner core, a bright off-centre dot). */
function phantomSlice(s: SeriesSpec, z: number): Buffer {
  const px = Buffer.alloc(s.rows * s.columns * 2);
  const cz = (z - (s.slices - 1) / 2) / ((s.slices / 2) * s.phantom.rz);
  for (let y = 0; y < s.rows; y++) {
    const cy = (y - (s.rows - 1) / 2) / ((s.rows / 2) * s.phantom.ry);
    for (let x = 0; x < s.columns; x++) {
      const cx = (x - (s.columns - 1) / 2) / ((s.columns / 2) * s.phantom.rx);
      const r2 = cx * cx + cy * cy + cz * cz;
      let v = 0;
      if (r2 <= 1) v = r2 > 0.8 ? s.phantom.level : Math.round(s.phantom.level * 0.6 + 200 * (1 - r2));
      const dx = cx - 0.3;
      const dy = cy + 0.2;
      if (dx * dx + dy * dy + cz * cz < 0.02) v = 4000;
      // a few gray levels of deterministic texture keep viewers' auto-windowing sane
      if (v > 0) v += (x * 7 + y * 13 + z * 17) % 23;
      px.writeUInt16LE(Math.min(v, 4095), (y * s.columns + x) * 2);
    }
  }
  return px;
}

/** Encodes slice `index` (0-based) of the series as a complete Part-10 file. */
export function mrSlice(s: SeriesSpec, index: number): Buffer {
  const sopUid = uidFrom(`${s.seriesKey}/sop/${index + 1}`);
  const studyUid = uidFrom(s.studyKey);
  const seriesUid = uidFrom(s.seriesKey);
  const forUid = uidFrom(`${s.studyKey}/frame-of-reference`);
  const fovX = s.columns * s.pixelSpacing;
  const fovY = s.rows * s.pixelSpacing;
  const z0 = -((s.slices - 1) * s.sliceThickness) / 2;
  const zPos = z0 + index * s.sliceThickness;
  const ipp = [-fovX / 2, -fovY / 2, zPos].map(ds).join('\\');
  const acqSeconds = Number(s.time.slice(0, 2)) * 3600 + Number(s.time.slice(2, 4)) * 60 + Number(s.time.slice(4, 6)) + s.seriesNumber * 60;
  const acqTime = [Math.floor(acqSeconds / 3600), Math.floor(acqSeconds / 60) % 60, acqSeconds % 60].map((n) => String(n).padStart(2, '0')).join('');

  const meta = encode([
    { tag: 0x00020001, vr: 'OB', value: Buffer.from([0, 1]) },
    str(0x00020002, 'UI', MR_IMAGE_STORAGE),
    str(0x00020003, 'UI', sopUid),
    str(0x00020010, 'UI', EXPLICIT_VR_LE),
    str(0x00020012, 'UI', IMPLEMENTATION_UID),
    str(0x00020013, 'SH', 'XNATFS_EMU_1'),
  ]);
  const groupLength = encode([ul(0x00020000, meta.length)]);

  const ds0 = encode([
    str(0x00080008, 'CS', 'ORIGINAL\\PRIMARY\\M\\ND'),
    str(0x00080016, 'UI', MR_IMAGE_STORAGE),
    str(0x00080018, 'UI', sopUid),
    str(0x00080020, 'DA', s.date),
    str(0x00080021, 'DA', s.date),
    str(0x00080022, 'DA', s.date),
    str(0x00080023, 'DA', s.date),
    str(0x00080030, 'TM', s.time),
    str(0x00080031, 'TM', acqTime),
    str(0x00080032, 'TM', acqTime),
    str(0x00080033, 'TM', acqTime),
    str(0x00080050, 'SH', s.accessionNumber),
    str(0x00080060, 'CS', 'MR'),
    // a vendor dcm2niix recognises (else it warns "not tuned for vendor") whose heuristics need no
    // private tags (SIEMENS makes it hunt for CSA slice timing and warn)
    str(0x00080070, 'LO', 'Canon Medical Systems'),
    str(0x00080090, 'PN', ''),
    str(0x00081030, 'LO', s.studyDescription),
    str(0x0008103e, 'LO', s.seriesDescription),
    str(0x00081090, 'LO', 'Emulated Phantom'),
    str(0x00100010, 'PN', s.patientName),
    str(0x00100020, 'LO', s.patientId),
    str(0x00100030, 'DA', ''),
    str(0x00100040, 'CS', 'O'),
    str(0x00180020, 'CS', 'GR'),
    str(0x00180021, 'CS', 'SP'),
    str(0x00180022, 'CS', ''),
    str(0x00180023, 'CS', s.mrAcquisitionType),
    str(0x00180050, 'DS', ds(s.sliceThickness)),
    str(0x00180080, 'DS', ds(s.repetitionTime)),
    str(0x00180081, 'DS', ds(s.echoTime)),
    str(0x00180087, 'DS', '3'),
    str(0x00180088, 'DS', ds(s.sliceThickness)),
    str(0x00181020, 'LO', 'xnatfs-emulator 1'),
    str(0x00181030, 'LO', s.seriesDescription),
    str(0x00181314, 'DS', ds(s.flipAngle)),
    str(0x00185100, 'CS', 'HFS'),
    str(0x0020000d, 'UI', studyUid),
    str(0x0020000e, 'UI', seriesUid),
    str(0x00200010, 'SH', '1'),
    str(0x00200011, 'IS', String(s.seriesNumber)),
    str(0x00200012, 'IS', '1'),
    str(0x00200013, 'IS', String(index + 1)),
    str(0x00200032, 'DS', ipp),
    str(0x00200037, 'DS', '1\\0\\0\\0\\1\\0'),
    str(0x00200052, 'UI', forUid),
    str(0x00201041, 'DS', ds(zPos)),
    us(0x00280002, 1),
    str(0x00280004, 'CS', 'MONOCHROME2'),
    us(0x00280010, s.rows),
    us(0x00280011, s.columns),
    str(0x00280030, 'DS', `${ds(s.pixelSpacing)}\\${ds(s.pixelSpacing)}`),
    us(0x00280100, 16),
    us(0x00280101, 12),
    us(0x00280102, 11),
    us(0x00280103, 0),
    str(0x00281050, 'DS', '1000'),
    str(0x00281051, 'DS', '2000'),
    str(0x00281052, 'DS', '0'),
    str(0x00281053, 'DS', '1'),
    str(0x00281054, 'LO', 'US'),
    { tag: 0x7fe00010, vr: 'OW', value: phantomSlice(s, index) },
  ]);

  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), groupLength, meta, ds0]);
}
