// Turns an archive URL (after /data, /REST or /data/archive) into the objects it names, with XNAT's
// addressing rules: labels or accession ids under a project, accession ids only at top level, scan
// selectors by ID or type (ALL, *, comma lists, [SLASH]/[COMMA]), resources by label or numeric id.
import type { UserSpec } from './auth.js';
import type { AuthService } from './auth.js';
import { HttpError } from './http.js';
import type { ArchiveStore, AssessorNode, ExperimentNode, OwnerNode, ProjectNode, ResourceNode, ScanNode, SubjectNode } from './store.js';

export interface Scope {
  project?: ProjectNode;
  subject?: SubjectNode;
  experiment?: ExperimentNode;
  scans?: ScanNode[];
  assessor?: AssessorNode;
  /** 'in' | 'out' when the URL said so (XNAT puts it back into URIs). */
  assessorType?: string;
  /** The URL went through /projects/P/subjects/S (file URIs then keep that form). */
  projectAndSubject: boolean;
}

export type Target =
  | { kind: 'projects' }
  | { kind: 'project'; scope: Scope }
  | { kind: 'subjects'; scope: Scope }
  | { kind: 'subject'; scope: Scope }
  | { kind: 'experiments'; scope: Scope } // global when scope.project is undefined
  | { kind: 'experiment'; scope: Scope }
  | { kind: 'scans'; scope: Scope }
  | { kind: 'scan'; scope: Scope }
  | { kind: 'assessors'; scope: Scope }
  | { kind: 'assessor'; scope: Scope }
  | { kind: 'resources'; scope: Scope; owners: OwnerNode[] }
  | { kind: 'resource'; scope: Scope; owners: OwnerNode[]; selector: string; extra: boolean }
  | { kind: 'files'; scope: Scope; owners: OwnerNode[]; selector: string | null; remainder: string };

export function ownersOf(scope: Scope): OwnerNode[] {
  if (scope.assessor) return [scope.assessor];
  if (scope.scans) return scope.scans;
  if (scope.experiment) return [scope.experiment];
  if (scope.subject) return [scope.subject];
  if (scope.project) return [scope.project];
  return [];
}

function decodeSeg(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'Invalid URL encoding');
  }
}

/** Resolve segments (raw, undecoded) of an archive path. */
export function resolveArchive(rawSegs: string[], store: ArchiveStore, auth: AuthService, user: UserSpec): Target | null {
  const segs = rawSegs.map(decodeSeg);
  const scope: Scope = { projectAndSubject: false };
  let i = 0;
  const at = (k: number): string | undefined => segs[k];
  const end = (k: number): boolean => k >= segs.length || (k === segs.length - 1 && segs[k] === '');

  const readable = (p: ProjectNode): boolean => auth.canRead(user, p.id);
  const hideUnreadable = (p: ProjectNode): void => {
    if (!readable(p)) throw new HttpError(404, `Unable to identify project ${p.id}`);
  };

  const first = at(0);
  if (first === 'projects') {
    if (end(1)) return { kind: 'projects' };
    const p = store.projects.get(at(1)!);
    if (!p) throw new HttpError(404, `Unable to identify project ${at(1)}`);
    scope.project = p;
    i = 2;
    if (end(i)) {
      if (!readable(p)) throw new HttpError(403, `Specified project ${p.id} is not accessible.`);
      return { kind: 'project', scope };
    }
    if (at(i) === 'subjects') {
      if (end(i + 1)) {
        if (!readable(p)) throw new HttpError(403, `Unable to read subjects for Project: ${p.id}`);
        return { kind: 'subjects', scope };
      }
      hideUnreadable(p);
      const key = at(i + 1)!;
      const subj = p.subjects.get(key) ?? [...p.subjects.values()].find((s) => s.id === key);
      if (!subj) throw new HttpError(404, `Unable to identify subject ${key}`);
      scope.subject = subj;
      scope.projectAndSubject = true;
      i += 2;
      if (end(i)) return { kind: 'subject', scope };
      if (at(i) === 'experiments') {
        if (end(i + 1)) return { kind: 'experiments', scope };
        scope.experiment = experimentOf(subj, at(i + 1)!);
        return experimentTail(segs, rawSegs, i + 2, scope);
      }
      return ownerTail(segs, rawSegs, i, scope, [subj]);
    }
    if (at(i) === 'experiments') {
      if (end(i + 1)) {
        if (!readable(p)) throw new HttpError(403, `Unable to read experiments for Project: ${p.id}`);
        return { kind: 'experiments', scope };
      }
      hideUnreadable(p);
      const ekey = at(i + 1)!;
      let e: ExperimentNode | undefined;
      for (const s of p.subjects.values()) if ((e = findExperiment(s, ekey))) break;
      if (!e) throw new HttpError(404, `Unable to identify experiment ${ekey}`);
      scope.subject = e.subject;
      scope.experiment = e;
      return experimentTail(segs, rawSegs, i + 2, scope);
    }
    hideUnreadable(p);
    return ownerTail(segs, rawSegs, i, scope, [p]);
  }

  if (first === 'subjects') {
    if (end(1)) return null;
    const subj = store.subjectsById.get(at(1)!);
    if (!subj || !readable(subj.project)) throw new HttpError(404, `Unable to identify subject ${at(1)}`);
    scope.project = subj.project;
    scope.subject = subj;
    i = 2;
    if (end(i)) return { kind: 'subject', scope };
    if (at(i) === 'experiments') {
      if (end(i + 1)) return { kind: 'experiments', scope };
      scope.experiment = experimentOf(subj, at(i + 1)!);
      return experimentTail(segs, rawSegs, i + 2, scope);
    }
    return ownerTail(segs, rawSegs, i, scope, [subj]);
  }

  if (first === 'experiments') {
    if (end(1)) return { kind: 'experiments', scope };
    const node = store.experimentsById.get(at(1)!);
    const proj = node ? (node.kind === 'assessor' ? node.experiment.subject.project : node.subject.project) : undefined;
    if (!node || !proj || !readable(proj)) throw new HttpError(404, `Unable to identify experiment ${at(1)}`);
    scope.project = proj;
    if (node.kind === 'assessor') {
      scope.experiment = node.experiment;
      scope.subject = node.experiment.subject;
      scope.assessor = node;
      return assessorTail(segs, rawSegs, 2, scope);
    }
    scope.subject = node.subject;
    scope.experiment = node;
    return experimentTail(segs, rawSegs, 2, scope);
  }
  return null;
}

/** A subject's experiment by label or accession id. */
function findExperiment(subj: SubjectNode, key: string): ExperimentNode | undefined {
  return subj.experiments.get(key) ?? [...subj.experiments.values()].find((x) => x.id === key);
}

/** The same, or 404 as XNAT words it. */
function experimentOf(subj: SubjectNode, key: string): ExperimentNode {
  const e = findExperiment(subj, key);
  if (!e) throw new HttpError(404, `Unable to identify experiment ${key}`);
  return e;
}

function experimentTail(segs: string[], rawSegs: string[], i: number, scope: Scope): Target | null {
  const e = scope.experiment!;
  const end = (k: number): boolean => k >= segs.length || (k === segs.length - 1 && segs[k] === '');
  if (end(i)) return { kind: 'experiment', scope };
  if (segs[i] === 'scans') {
    if (end(i + 1)) return { kind: 'scans', scope };
    scope.scans = selectScans(e, segs[i + 1]!);
    if (end(i + 2)) return { kind: 'scan', scope };
    return ownerTail(segs, rawSegs, i + 2, scope, scope.scans);
  }
  if (segs[i] === 'assessors') {
    if (end(i + 1)) return { kind: 'assessors', scope };
    const key = segs[i + 1]!;
    const a = e.assessors.get(key) ?? [...e.assessors.values()].find((x) => x.id === key);
    if (!a) throw new HttpError(404, `Unable to identify assessor ${key}`);
    scope.assessor = a;
    return assessorTail(segs, rawSegs, i + 2, scope);
  }
  return ownerTail(segs, rawSegs, i, scope, [e]);
}

function assessorTail(segs: string[], rawSegs: string[], i: number, scope: Scope): Target | null {
  const end = (k: number): boolean => k >= segs.length || (k === segs.length - 1 && segs[k] === '');
  if (end(i)) return { kind: 'assessor', scope };
  if (segs[i] === 'in' || segs[i] === 'out') {
    scope.assessorType = segs[i];
    i++;
  }
  return ownerTail(segs, rawSegs, i, scope, [scope.assessor!]);
}

/** resources[/R[/files[/path]]] or files[/path] below an owner. */
function ownerTail(segs: string[], rawSegs: string[], i: number, scope: Scope, owners: OwnerNode[]): Target | null {
  const end = (k: number): boolean => k >= segs.length || (k === segs.length - 1 && segs[k] === '');
  const remainderFrom = (k: number): string => rawSegs.slice(k).join('/');
  if (segs[i] === 'resources') {
    if (end(i + 1)) return { kind: 'resources', scope, owners };
    const selector = segs[i + 1]!;
    if (end(i + 2)) return { kind: 'resource', scope, owners, selector, extra: false };
    if (segs[i + 2] === 'files') return { kind: 'files', scope, owners, selector, remainder: remainderFrom(i + 3) };
    return { kind: 'resource', scope, owners, selector, extra: true };
  }
  if (segs[i] === 'files') return { kind: 'files', scope, owners, selector: null, remainder: remainderFrom(i + 1) };
  return null;
}

/** XNAT's {SCAN} selector: IDs or types, ALL/*, comma lists, [SLASH]/[COMMA] escapes. */
export function selectScans(e: ExperimentNode, selector: string): ScanNode[] {
  const all = [...e.scans.values()];
  const picked = new Set<ScanNode>();
  for (let tok of selector.split(',')) {
    tok = tok.replace(/\[SLASH\]/g, '/').replace(/\[COMMA\]/g, ',');
    if (tok === 'ALL' || tok === '*') all.forEach((s) => picked.add(s));
    else if (tok === 'NULL') all.filter((s) => !s.type).forEach((s) => picked.add(s));
    else all.filter((s) => s.id === tok || s.type === tok).forEach((s) => picked.add(s));
  }
  if (!picked.size && !selector.split(',').some((t) => t === 'ALL' || t === '*')) throw new HttpError(404, `Unable to identify scan ${selector}`);
  return all.filter((s) => picked.has(s));
}

/** Resources of `owners` matching a label or numeric id (comma lists allowed). */
export function selectResources(owners: OwnerNode[], selector: string): ResourceNode[] {
  const keys = selector.split(',');
  const out: ResourceNode[] = [];
  for (const o of owners) for (const r of o.resources.values()) if (keys.includes(r.label) || keys.includes(String(r.id))) out.push(r);
  return out;
}
