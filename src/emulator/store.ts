// The emulator's archive: a plain directory tree plus one small JSON file per object.
//
//   DIR/projects/{P}/project.json                      {"ID","name","secondary_ID","description","pi_firstname","pi_lastname","insert_date"}
//   DIR/projects/{P}/resources/{R}/resource.json       resource meta + file catalogue (see below)
//   DIR/projects/{P}/resources/{R}/files/...           the file bytes, subfolders as-is
//   DIR/projects/{P}/subjects/{S}/subject.json         {"ID":"XNAT_S00001","label","insert_date","insert_user"}
//   DIR/projects/{P}/subjects/{S}/resources/{R}/...
//   DIR/projects/{P}/subjects/{S}/experiments/{E}/experiment.json   {"ID":"XNAT_E00001","label","xsiType","date","insert_date"}
//   …/experiments/{E}/resources/{R}/...
//   …/experiments/{E}/scans/{scanId}/scan.json          {"ID","xnat_imagescandata_id","type","xsiType","quality","note","series_description","frames"}
//   …/experiments/{E}/scans/{scanId}/resources/{R}/...
//   …/experiments/{E}/assessors/{A}/assessor.json       {"ID":"XNAT_E00004","label","xsiType","date","insert_date"}
//   …/experiments/{E}/assessors/{A}/resources/{R}/...
//
// Folder names are labels ({S},{E},{A}), scan IDs and resource labels (each percent-encoded only
// where the label holds '/', '%' or is '.'/'..'). resource.json looks like
//   {"xnat_abstractresource_id":1001,"label":"DICOM","format":"DICOM","content":"RAW","tags":[],
//    "description":"","files":[{"path":"sub/x.dcm","size":1234,"digest":"<md5 hex>"}]}
// The digest is computed while a file is written and cached here, so listings never rehash.
// Accession ids and resource ids continue from the highest found at load time.
// Everything is loaded asynchronously at start; writes update memory and rewrite the one small
// JSON file they touch (atomically: temp file + rename).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface FileMeta {
  size: number;
  digest: string;
  /** Entry-level values given at upload (format/content/tags query params); resource's otherwise. */
  format?: string;
  content?: string;
  tags?: string[];
}

export interface ProjectNode {
  kind: 'project';
  id: string;
  name: string;
  secondaryId: string;
  description: string;
  piFirstname: string;
  piLastname: string;
  insertDate: string;
  dir: string;
  subjects: Map<string, SubjectNode>; // by label
  resources: Map<string, ResourceNode>; // by label
}
export interface SubjectNode {
  kind: 'subject';
  id: string;
  label: string;
  insertDate: string;
  insertUser: string;
  project: ProjectNode;
  dir: string;
  experiments: Map<string, ExperimentNode>;
  resources: Map<string, ResourceNode>;
}
export interface ExperimentNode {
  kind: 'experiment';
  id: string;
  label: string;
  xsiType: string;
  date: string;
  insertDate: string;
  subject: SubjectNode;
  dir: string;
  scans: Map<string, ScanNode>; // by scan ID
  assessors: Map<string, AssessorNode>; // by label
  resources: Map<string, ResourceNode>;
}
export interface ScanNode {
  kind: 'scan';
  id: string;
  pk: number;
  type: string;
  xsiType: string;
  quality: string;
  note: string;
  seriesDescription: string;
  frames: string;
  experiment: ExperimentNode;
  dir: string;
  resources: Map<string, ResourceNode>;
}
export interface AssessorNode {
  kind: 'assessor';
  id: string;
  label: string;
  xsiType: string;
  date: string;
  insertDate: string;
  experiment: ExperimentNode;
  dir: string;
  resources: Map<string, ResourceNode>;
}
export type OwnerNode = ProjectNode | SubjectNode | ExperimentNode | ScanNode | AssessorNode;

export interface ResourceNode {
  kind: 'resource';
  id: number;
  label: string;
  format: string;
  content: string;
  tags: string[];
  description: string;
  owner: OwnerNode;
  dir: string;
  files: Map<string, FileMeta>; // by relative path, catalogue order
}

export interface ResourceInfo {
  format?: string;
  content?: string;
  tags?: string[];
  description?: string;
}

export interface TempFile {
  path: string;
  size: number;
  digest: string;
}

/** Fixed creation stamp used where XNAT would record "now" (keeps seeded archives reproducible). */
export function xnatNow(d = new Date()): { date: string; insertDate: string } {
  const iso = d.toISOString();
  return { date: iso.slice(0, 10), insertDate: `${iso.slice(0, 10)} ${iso.slice(11, 19)}.0` };
}

export function projectOf(o: OwnerNode): ProjectNode {
  switch (o.kind) {
    case 'project':
      return o;
    case 'subject':
      return o.project;
    case 'experiment':
      return o.subject.project;
    case 'scan':
    case 'assessor':
      return o.experiment.subject.project;
  }
}

function dirName(label: string): string {
  if (label === '.' || label === '..') return encodeURIComponent(label).replace(/\./g, '%2E');
  return label.replace(/[%/\\\0]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}
function undirName(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

async function readJson(file: string): Promise<Record<string, unknown> | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}
async function subdirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}
const s = (v: unknown, d = ''): string => (v === undefined || v === null ? d : String(v));

async function writeJsonAtomic(file: string, data: unknown): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(data, null, 1) + '\n');
  await rename(tmp, file);
}

export class ArchiveStore {
  readonly projects = new Map<string, ProjectNode>();
  readonly subjectsById = new Map<string, SubjectNode>();
  readonly experimentsById = new Map<string, ExperimentNode | AssessorNode>();
  readonly resourcesById = new Map<number, ResourceNode>();
  private nextSubject = 1;
  private nextExperiment = 1;
  private nextResource = 1001;
  private nextScanPk = 1;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(readonly root: string) {}

  get uploadDir(): string {
    return path.join(this.root, '.uploads');
  }

  /** True when the directory holds no archive yet (so seeding is allowed). */
  async isEmpty(): Promise<boolean> {
    return (await subdirs(path.join(this.root, 'projects'))).length === 0;
  }

  async load(): Promise<void> {
    await mkdir(path.join(this.root, 'projects'), { recursive: true });
    await rm(this.uploadDir, { recursive: true, force: true });
    await mkdir(this.uploadDir, { recursive: true });
    for (const pName of await subdirs(path.join(this.root, 'projects'))) {
      const pDir = path.join(this.root, 'projects', pName);
      const pj = (await readJson(path.join(pDir, 'project.json'))) ?? {};
      const p: ProjectNode = {
        kind: 'project',
        id: s(pj.ID, undirName(pName)),
        name: s(pj.name, undirName(pName)),
        secondaryId: s(pj.secondary_ID, undirName(pName)),
        description: s(pj.description),
        piFirstname: s(pj.pi_firstname),
        piLastname: s(pj.pi_lastname),
        insertDate: s(pj.insert_date),
        dir: pDir,
        subjects: new Map(),
        resources: new Map(),
      };
      this.projects.set(p.id, p);
      await this.loadResources(p);
      for (const sName of await subdirs(path.join(pDir, 'subjects'))) {
        const sDir = path.join(pDir, 'subjects', sName);
        const sj = (await readJson(path.join(sDir, 'subject.json'))) ?? {};
        const subj: SubjectNode = {
          kind: 'subject',
          id: s(sj.ID) || this.newSubjectId(),
          label: s(sj.label, undirName(sName)),
          insertDate: s(sj.insert_date),
          insertUser: s(sj.insert_user),
          project: p,
          dir: sDir,
          experiments: new Map(),
          resources: new Map(),
        };
        this.bumpSubject(subj.id);
        p.subjects.set(subj.label, subj);
        this.subjectsById.set(subj.id, subj);
        await this.loadResources(subj);
        for (const eName of await subdirs(path.join(sDir, 'experiments'))) {
          const eDir = path.join(sDir, 'experiments', eName);
          const ej = (await readJson(path.join(eDir, 'experiment.json'))) ?? {};
          const exp: ExperimentNode = {
            kind: 'experiment',
            id: s(ej.ID) || this.newExperimentId(),
            label: s(ej.label, undirName(eName)),
            xsiType: s(ej.xsiType, 'xnat:mrSessionData'),
            date: s(ej.date),
            insertDate: s(ej.insert_date),
            subject: subj,
            dir: eDir,
            scans: new Map(),
            assessors: new Map(),
            resources: new Map(),
          };
          this.bumpExperiment(exp.id);
          subj.experiments.set(exp.label, exp);
          this.experimentsById.set(exp.id, exp);
          await this.loadResources(exp);
          for (const scName of await subdirs(path.join(eDir, 'scans'))) {
            const scDir = path.join(eDir, 'scans', scName);
            const cj = (await readJson(path.join(scDir, 'scan.json'))) ?? {};
            const pk = Number(cj.xnat_imagescandata_id) || this.nextScanPk;
            this.nextScanPk = Math.max(this.nextScanPk, pk + 1);
            const scan: ScanNode = {
              kind: 'scan',
              id: s(cj.ID, undirName(scName)),
              pk,
              type: s(cj.type),
              xsiType: s(cj.xsiType, 'xnat:mrScanData'),
              quality: s(cj.quality, 'usable'),
              note: s(cj.note),
              seriesDescription: s(cj.series_description, s(cj.type)),
              frames: s(cj.frames),
              experiment: exp,
              dir: scDir,
              resources: new Map(),
            };
            exp.scans.set(scan.id, scan);
            await this.loadResources(scan);
          }
          for (const aName of await subdirs(path.join(eDir, 'assessors'))) {
            const aDir = path.join(eDir, 'assessors', aName);
            const aj = (await readJson(path.join(aDir, 'assessor.json'))) ?? {};
            const a: AssessorNode = {
              kind: 'assessor',
              id: s(aj.ID) || this.newExperimentId(),
              label: s(aj.label, undirName(aName)),
              xsiType: s(aj.xsiType, 'xnat:qcAssessmentData'),
              date: s(aj.date),
              insertDate: s(aj.insert_date),
              experiment: exp,
              dir: aDir,
              resources: new Map(),
            };
            this.bumpExperiment(a.id);
            exp.assessors.set(a.label, a);
            this.experimentsById.set(a.id, a);
            await this.loadResources(a);
          }
        }
      }
    }
  }

  private async loadResources(owner: OwnerNode): Promise<void> {
    for (const rName of await subdirs(path.join(owner.dir, 'resources'))) {
      const rDir = path.join(owner.dir, 'resources', rName);
      const rj = (await readJson(path.join(rDir, 'resource.json'))) ?? {};
      const id = Number(rj.xnat_abstractresource_id) || this.nextResource;
      this.nextResource = Math.max(this.nextResource, id + 1);
      const res: ResourceNode = {
        kind: 'resource',
        id,
        label: s(rj.label, undirName(rName)),
        format: s(rj.format),
        content: s(rj.content),
        tags: Array.isArray(rj.tags) ? rj.tags.map(String) : [],
        description: s(rj.description),
        owner,
        dir: rDir,
        files: new Map(),
      };
      if (Array.isArray(rj.files)) {
        for (const f of rj.files as Array<FileMeta & { path: string }>) {
          const { path: rel, ...meta } = f;
          res.files.set(rel, { ...meta, size: Number(f.size), digest: s(f.digest) });
        }
      } else {
        await this.scanFiles(res);
      }
      owner.resources.set(res.label, res);
      this.resourcesById.set(res.id, res);
    }
  }

  /** A resource folder without a catalogue (dropped in by hand): hash what is there once. */
  private async scanFiles(res: ResourceNode): Promise<void> {
    const base = path.join(res.dir, 'files');
    const walk = async (dir: string, rel: string): Promise<void> => {
      let ents;
      try {
        ents = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of ents.sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(path.join(dir, e.name), r);
        else if (e.isFile()) {
          const h = createHash('md5');
          let size = 0;
          for await (const c of createReadStream(path.join(dir, e.name)) as AsyncIterable<Buffer>) {
            h.update(c);
            size += c.length;
          }
          res.files.set(r, { size, digest: h.digest('hex') });
        }
      }
    };
    await walk(base, '');
    await this.saveResource(res);
  }

  // ------------------------------------------------------------------ ids

  private bumpSubject(id: string): void {
    const n = Number(/(\d+)$/.exec(id)?.[1]);
    if (n >= this.nextSubject) this.nextSubject = n + 1;
  }
  private bumpExperiment(id: string): void {
    const n = Number(/(\d+)$/.exec(id)?.[1]);
    if (n >= this.nextExperiment) this.nextExperiment = n + 1;
  }
  private newSubjectId(): string {
    return `XNAT_S${String(this.nextSubject++).padStart(5, '0')}`;
  }
  private newExperimentId(): string {
    return `XNAT_E${String(this.nextExperiment++).padStart(5, '0')}`;
  }

  // ------------------------------------------------------------------ creation

  async ensureProject(id: string, info: Partial<Pick<ProjectNode, 'name' | 'description' | 'secondaryId' | 'piFirstname' | 'piLastname' | 'insertDate'>> = {}): Promise<ProjectNode> {
    let p = this.projects.get(id);
    if (p) return p;
    p = {
      kind: 'project',
      id,
      name: info.name ?? id,
      secondaryId: info.secondaryId ?? id,
      description: info.description ?? '',
      piFirstname: info.piFirstname ?? '',
      piLastname: info.piLastname ?? '',
      insertDate: info.insertDate ?? xnatNow().insertDate,
      dir: path.join(this.root, 'projects', dirName(id)),
      subjects: new Map(),
      resources: new Map(),
    };
    this.projects.set(id, p);
    await mkdir(p.dir, { recursive: true });
    await writeJsonAtomic(path.join(p.dir, 'project.json'), {
      ID: p.id,
      name: p.name,
      secondary_ID: p.secondaryId,
      description: p.description,
      pi_firstname: p.piFirstname,
      pi_lastname: p.piLastname,
      insert_date: p.insertDate,
    });
    return p;
  }

  async ensureSubject(p: ProjectNode, label: string, info: { insertDate?: string; insertUser?: string } = {}): Promise<SubjectNode> {
    let subj = p.subjects.get(label);
    if (subj) return subj;
    subj = {
      kind: 'subject',
      id: this.newSubjectId(),
      label,
      insertDate: info.insertDate ?? xnatNow().insertDate,
      insertUser: info.insertUser ?? 'admin',
      project: p,
      dir: path.join(p.dir, 'subjects', dirName(label)),
      experiments: new Map(),
      resources: new Map(),
    };
    p.subjects.set(label, subj);
    this.subjectsById.set(subj.id, subj);
    await mkdir(subj.dir, { recursive: true });
    await writeJsonAtomic(path.join(subj.dir, 'subject.json'), { ID: subj.id, label, insert_date: subj.insertDate, insert_user: subj.insertUser });
    return subj;
  }

  async ensureExperiment(subj: SubjectNode, label: string, info: { xsiType?: string; date?: string; insertDate?: string } = {}): Promise<ExperimentNode> {
    let e = subj.experiments.get(label);
    if (e) return e;
    const now = xnatNow();
    e = {
      kind: 'experiment',
      id: this.newExperimentId(),
      label,
      xsiType: info.xsiType ?? 'xnat:mrSessionData',
      date: info.date ?? now.date,
      insertDate: info.insertDate ?? now.insertDate,
      subject: subj,
      dir: path.join(subj.dir, 'experiments', dirName(label)),
      scans: new Map(),
      assessors: new Map(),
      resources: new Map(),
    };
    subj.experiments.set(label, e);
    this.experimentsById.set(e.id, e);
    await mkdir(e.dir, { recursive: true });
    await writeJsonAtomic(path.join(e.dir, 'experiment.json'), { ID: e.id, label, xsiType: e.xsiType, date: e.date, insert_date: e.insertDate });
    return e;
  }

  async ensureScan(e: ExperimentNode, id: string, info: { type?: string; xsiType?: string; seriesDescription?: string; quality?: string; note?: string; frames?: string } = {}): Promise<ScanNode> {
    let sc = e.scans.get(id);
    if (sc) return sc;
    sc = {
      kind: 'scan',
      id,
      pk: this.nextScanPk++,
      type: info.type ?? '',
      xsiType: info.xsiType ?? 'xnat:mrScanData',
      quality: info.quality ?? 'usable',
      note: info.note ?? '',
      seriesDescription: info.seriesDescription ?? info.type ?? '',
      frames: info.frames ?? '',
      experiment: e,
      dir: path.join(e.dir, 'scans', dirName(id)),
      resources: new Map(),
    };
    e.scans.set(id, sc);
    await mkdir(sc.dir, { recursive: true });
    await writeJsonAtomic(path.join(sc.dir, 'scan.json'), {
      ID: sc.id,
      xnat_imagescandata_id: sc.pk,
      type: sc.type,
      xsiType: sc.xsiType,
      quality: sc.quality,
      note: sc.note,
      series_description: sc.seriesDescription,
      frames: sc.frames,
    });
    return sc;
  }

  async ensureAssessor(e: ExperimentNode, label: string, info: { xsiType?: string; date?: string; insertDate?: string } = {}): Promise<AssessorNode> {
    let a = e.assessors.get(label);
    if (a) return a;
    const now = xnatNow();
    a = {
      kind: 'assessor',
      id: this.newExperimentId(),
      label,
      xsiType: info.xsiType ?? 'xnat:qcAssessmentData',
      date: info.date ?? now.date,
      insertDate: info.insertDate ?? now.insertDate,
      experiment: e,
      dir: path.join(e.dir, 'assessors', dirName(label)),
      resources: new Map(),
    };
    e.assessors.set(label, a);
    this.experimentsById.set(a.id, a);
    await mkdir(a.dir, { recursive: true });
    await writeJsonAtomic(path.join(a.dir, 'assessor.json'), { ID: a.id, label, xsiType: a.xsiType, date: a.date, insert_date: a.insertDate });
    return a;
  }

  async createResource(owner: OwnerNode, label: string, info: ResourceInfo = {}): Promise<ResourceNode> {
    const res: ResourceNode = {
      kind: 'resource',
      id: this.nextResource++,
      label,
      format: info.format ?? '',
      content: info.content ?? '',
      tags: info.tags ?? [],
      description: info.description ?? '',
      owner,
      dir: path.join(owner.dir, 'resources', dirName(label)),
      files: new Map(),
    };
    owner.resources.set(label, res);
    this.resourcesById.set(res.id, res);
    await mkdir(path.join(res.dir, 'files'), { recursive: true });
    await this.saveResource(res);
    return res;
  }

  async deleteResource(res: ResourceNode): Promise<void> {
    await this.withLock(res, async () => {
      res.owner.resources.delete(res.label);
      this.resourcesById.delete(res.id);
      await rm(res.dir, { recursive: true, force: true });
    });
  }

  private async saveResource(res: ResourceNode): Promise<void> {
    await writeJsonAtomic(path.join(res.dir, 'resource.json'), {
      xnat_abstractresource_id: res.id,
      label: res.label,
      format: res.format,
      content: res.content,
      tags: res.tags,
      description: res.description,
      files: [...res.files].map(([p, m]) => ({ path: p, ...m })),
    });
  }

  /** Serialises catalogue updates per resource. */
  private async withLock<T>(res: ResourceNode, fn: () => Promise<T>): Promise<T> {
    const key = String(res.id);
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }

  // ------------------------------------------------------------------ files

  /** Absolute path for a relative file path, or null when it escapes the resource. */
  filePath(res: ResourceNode, rel: string): string | null {
    const base = path.join(res.dir, 'files');
    const abs = path.resolve(base, rel);
    return abs.startsWith(base + path.sep) ? abs : null;
  }

  /** A Writable that streams into a temp file while hashing; `done` gives path/size/md5. */
  tempSink(): { sink: Writable; done: Promise<TempFile> } {
    const p = path.join(this.uploadDir, `${Date.now()}-${randomBytes(6).toString('hex')}`);
    const hash = createHash('md5');
    let size = 0;
    const pass = new PassThrough();
    pass.on('data', (c: Buffer) => {
      hash.update(c);
      size += c.length;
    });
    const done = pipeline(pass, createWriteStream(p)).then(() => ({ path: p, size, digest: hash.digest('hex') }));
    done.catch(() => unlink(p).catch(() => undefined));
    return { sink: pass, done };
  }

  async discardTemp(t: TempFile): Promise<void> {
    await unlink(t.path).catch(() => undefined);
  }

  /** Moves a temp file into the resource. Returns false (and drops the temp) on a kept duplicate. */
  async commitFile(res: ResourceNode, rel: string, t: TempFile, opts: { overwrite: boolean; mtime?: Date; entry?: ResourceInfo }): Promise<boolean> {
    const abs = this.filePath(res, rel);
    if (!abs) throw new Error(`invalid file path ${rel}`);
    return this.withLock(res, async () => {
      const exists = res.files.has(rel) || (await stat(abs).then(() => true, () => false));
      if (exists && !opts.overwrite) {
        await this.discardTemp(t);
        return false;
      }
      await mkdir(path.dirname(abs), { recursive: true });
      await rename(t.path, abs);
      if (opts.mtime) await utimes(abs, opts.mtime, opts.mtime);
      const meta: FileMeta = { size: t.size, digest: t.digest };
      if (opts.entry?.format) meta.format = opts.entry.format;
      if (opts.entry?.content) meta.content = opts.entry.content;
      if (opts.entry?.tags?.length) meta.tags = opts.entry.tags;
      res.files.set(rel, meta);
      await this.saveResource(res);
      return true;
    });
  }

  async writeBuffer(res: ResourceNode, rel: string, data: Buffer, opts: { overwrite: boolean; mtime?: Date }): Promise<boolean> {
    const t = this.tempSink();
    t.sink.end(data);
    return this.commitFile(res, rel, await t.done, opts);
  }

  async deleteFiles(res: ResourceNode, rels: string[]): Promise<void> {
    await this.withLock(res, async () => {
      const base = path.join(res.dir, 'files');
      for (const rel of rels) {
        const abs = this.filePath(res, rel);
        res.files.delete(rel);
        if (!abs) continue;
        await rm(abs, { force: true });
        // like XNAT: drop folders left empty
        for (let d = path.dirname(abs); d.startsWith(base + path.sep); d = path.dirname(d)) {
          if ((await readdir(d).catch(() => ['x'])).length) break;
          await rm(d, { recursive: true, force: true });
        }
      }
      await this.saveResource(res);
    });
  }

  resourceStats(res: ResourceNode): { count: number; size: number } {
    let size = 0;
    for (const f of res.files.values()) size += f.size;
    return { count: res.files.size, size };
  }
}
