// An in-memory XnatApi for testing the catalogue, content and fs layers without HTTP or FUSE.
// It counts calls so tests can assert how many "requests" an operation costs.
import { Readable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import type {
  Assessor, Experiment, FileEntry, FileRef, Owner, Project, ReadOptions, ReadResult, Resource, Scan, ScopedResource, Subject, UploadOptions, XnatApi,
} from '../../src/xnat/types.js';
import { XnatError } from '../../src/xnat/types.js';
import { createHash } from 'node:crypto';

interface MemResource { resource: Resource; files: Map<string, Buffer> }

export class MemoryXnat implements XnatApi {
  readonly baseUrl = 'http://memory.invalid';
  calls: string[] = [];
  projects: Project[] = [];
  subjects = new Map<string, Subject[]>();
  experiments = new Map<string, Experiment[]>();
  scans = new Map<string, Scan[]>();
  assessors = new Map<string, Assessor[]>();
  resources = new Map<string, MemResource[]>();
  /** Make the next N readFile calls fail mid-body after this many bytes. */
  failReads: { count: number; afterBytes: number } = { count: 0, afterBytes: 0 };
  rangeSupport = false;
  /** false: list every digest as "" (an XNAT whose checksums setting is off). */
  digests = true;
  /** Every upload request as sent: its path, and whether it asked to overwrite. */
  uploads: Array<{ path: string; overwrite: boolean }> = [];
  /**
   * The next N uploads are stored (as XNAT would) and then fail as if the connection dropped
   * before the answer arrived: the client cannot tell they landed.
   */
  loseAnswers = 0;
  private nextResourceId = 100;

  static ownerKey(o: Owner): string {
    switch (o.level) {
      case 'project': return `p/${o.project}`;
      case 'subject': return `s/${o.subject}`;
      case 'experiment': return `e/${o.experiment}`;
      case 'scan': return `e/${o.experiment}/scan/${o.scan}`;
      case 'assessor': return `a/${o.assessor}`;
    }
  }

  addFile(owner: Owner, resourceLabel: string, path: string, data: Buffer): void {
    const key = MemoryXnat.ownerKey(owner);
    const list = this.resources.get(key) ?? [];
    this.resources.set(key, list);
    let r = list.find((x) => x.resource.label === resourceLabel);
    if (!r) {
      r = { resource: { id: String(this.nextResourceId++), label: resourceLabel, format: '', content: '', fileCount: 0, fileSize: 0 }, files: new Map() };
      list.push(r);
    }
    r.files.set(path, data);
  }

  private findResource(owner: Owner, resource: string): MemResource | undefined {
    return this.resources.get(MemoryXnat.ownerKey(owner))?.find((r) => r.resource.label === resource || r.resource.id === resource);
  }

  private entries(owner: Owner, r: MemResource): FileEntry[] {
    return [...r.files].map(([path, data]) => ({
      path, size: data.length, digest: this.digests ? createHash('md5').update(data).digest('hex') : '',
      uri: `/data/${MemoryXnat.ownerKey(owner)}/resources/${r.resource.id}/files/${path}`,
      resourceLabel: r.resource.label, resourceId: r.resource.id,
    }));
  }

  async listProjects() { this.calls.push('projects'); return this.projects; }
  async listSubjects(p: string) { this.calls.push(`subjects ${p}`); return this.subjects.get(p) ?? []; }
  async listExperiments(p: string, s?: string) {
    this.calls.push(`experiments ${p} ${s ?? ''}`);
    const all = this.experiments.get(p) ?? [];
    return s ? all.filter((e) => e.subjectId === s) : all;
  }
  async listScans(_p: string, e: string) { this.calls.push(`scans ${e}`); return this.scans.get(e) ?? []; }
  async listAssessors(_p: string, e: string) { this.calls.push(`assessors ${e}`); return this.assessors.get(e) ?? []; }
  async listResources(owner: Owner) {
    this.calls.push(`resources ${MemoryXnat.ownerKey(owner)}`);
    return (this.resources.get(MemoryXnat.ownerKey(owner)) ?? []).map((r) => r.resource);
  }
  async listFiles(owner: Owner, resource: string) {
    this.calls.push(`files ${MemoryXnat.ownerKey(owner)} ${resource}`);
    const r = this.findResource(owner, resource);
    if (!r) throw new XnatError('not-found', 'no such resource', 404);
    return this.entries(owner, r);
  }
  async listAllScanFiles(_p: string, e: string) {
    this.calls.push(`scanfiles ${e}`);
    const out: Array<FileEntry & { scan: string }> = [];
    for (const [key, list] of this.resources) {
      const m = new RegExp(`^e/${e}/scan/(.+)$`).exec(key);
      if (!m) continue;
      const owner: Owner = { level: 'scan', project: '', experiment: e, scan: m[1]! };
      for (const r of list) for (const f of this.entries(owner, r)) out.push({ ...f, scan: m[1]! });
    }
    return out;
  }
  async listAllResources(_p: string, e: string): Promise<ScopedResource[]> {
    this.calls.push(`allresources ${e}`);
    const out: ScopedResource[] = [];
    for (const [key, list] of this.resources) {
      if (key === `e/${e}`) out.push(...list.map((r) => ({ ...r.resource, category: 'resources', catId: e })));
      const m = new RegExp(`^e/${e}/scan/(.+)$`).exec(key);
      if (m) out.push(...list.map((r) => ({ ...r.resource, category: 'scans', catId: m[1]! })));
    }
    return out;
  }
  async readFile(file: FileRef, options: ReadOptions = {}): Promise<ReadResult> {
    this.calls.push(`get ${file.path}`);
    const r = this.findResource(file.owner, file.resource);
    const data = r?.files.get(file.path);
    if (!data) throw new XnatError('not-found', 'Unable to find file.', 404);
    const ranged = this.rangeSupport && options.start !== undefined;
    const start = ranged ? options.start! : 0;
    let body = data.subarray(start, options.end ?? data.length);
    if (this.failReads.count > 0) {
      this.failReads.count--;
      const cut = body.subarray(0, this.failReads.afterBytes);
      const stream = new Readable({ read() {} });
      stream.push(cut);
      setImmediate(() => stream.destroy(new Error('socket hang up')));
      return { status: ranged ? 206 : 200, start, totalSize: data.length, lastModified: null, body: stream };
    }
    return { status: ranged ? 206 : 200, start, totalSize: data.length, lastModified: null, body: Readable.from([Buffer.from(body)]) };
  }
  async downloadResourceZip(_owner?: Owner, _resource?: string, _options?: { signal?: AbortSignal; compression?: number; background?: boolean }): Promise<Readable> { throw new XnatError('bad-request', 'zip not supported in memory', 400); }
  async createResource(owner: Owner, label: string) {
    this.calls.push(`mkres ${label}`);
    if (this.findResource(owner, label)) throw new XnatError('conflict', 'Specified resource already exists.', 409);
    const key = MemoryXnat.ownerKey(owner);
    const list = this.resources.get(key) ?? [];
    this.resources.set(key, list);
    list.push({ resource: { id: String(this.nextResourceId++), label, format: '', content: '', fileCount: 0, fileSize: 0 }, files: new Map() });
  }
  async uploadFile(owner: Owner, resource: string, path: string, options: UploadOptions) {
    this.calls.push(`upload ${path}`);
    this.uploads.push({ path, overwrite: options.overwrite });
    let data: Buffer;
    if ('sourcePath' in options) {
      data = await readFile(options.sourcePath);
    } else {
      const parts: Buffer[] = [];
      for await (const chunk of options.stream()) parts.push(chunk);
      data = Buffer.concat(parts);
    }
    const r = this.findResource(owner, resource);
    if (r?.files.has(path) && !options.overwrite) throw new XnatError('duplicate', `XNAT kept the existing ${path}`, 200);
    if (r) r.files.set(path, data);
    else this.addFile(owner, resource, path, data);
    if (this.loseAnswers > 0) {
      this.loseAnswers--;
      throw new XnatError('network', `connection to ${this.baseUrl} lost before its answer to PUT ${path} (socket hang up)`);
    }
  }
  async deleteFile(owner: Owner, resource: string, path: string, _knownPaths?: readonly string[]) {
    this.calls.push(`delete ${path}`);
    const r = this.findResource(owner, resource);
    let n = 0;
    for (const k of [...(r?.files.keys() ?? [])]) if (k === path || k.startsWith(`${path}/`)) { r!.files.delete(k); n++; }
    if (n === 0) throw new XnatError('not-found', 'No matched files', 404);
  }
  async deleteResource(owner: Owner, resource: string) {
    this.calls.push(`rmres ${resource}`);
    const key = MemoryXnat.ownerKey(owner);
    this.resources.set(key, (this.resources.get(key) ?? []).filter((r) => r.resource.label !== resource && r.resource.id !== resource));
  }
  async close() {}
}

/** A small archive: project P1 / subject S1 / experiment E1 with scan 4 (DICOM, n files). */
export function sampleArchive(nFiles = 5): MemoryXnat {
  const x = new MemoryXnat();
  x.projects = [{ id: 'P1', name: 'Project one', secondaryId: '', description: '' }];
  x.subjects.set('P1', [{ id: 'XNAT_S00001', label: 'S1', project: 'P1', insertDate: '' }]);
  x.experiments.set('P1', [{ id: 'XNAT_E00001', label: 'E1', project: 'P1', xsiType: 'xnat:mrSessionData', date: '', insertDate: '', subjectId: 'XNAT_S00001' }]);
  x.scans.set('XNAT_E00001', [{ id: '4', type: 'Ax 3D T1', seriesDescription: '', xsiType: 'xnat:mrScanData', quality: 'usable' }]);
  for (let i = 0; i < nFiles; i++) {
    x.addFile({ level: 'scan', project: 'P1', experiment: 'XNAT_E00001', scan: '4' }, 'DICOM', `${String(i).padStart(4, '0')}.dcm`, Buffer.alloc(1000 + i, i));
  }
  x.addFile({ level: 'experiment', project: 'P1', experiment: 'XNAT_E00001' }, 'NOTES', 'sub dir/a#b.txt', Buffer.from('hello'));
  x.addFile({ level: 'project', project: 'P1' }, 'protocols', 'README.txt', Buffer.from('read me'));
  return x;
}
