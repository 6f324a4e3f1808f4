// Maps mount paths onto XNAT objects and back, listing lazily over the client with cached
// listings. The path layout mirrors XNAT's REST URLs (see doc/SEMANTICS.md):
//   /projects/P/subjects/S/experiments/E/scans/<ID>-<type>/resources/R/files/…
//   /projects/P/experiments/E/…   /projects/P/resources/R/files/…   …/assessors/A/resources/R/files/…
// Only what XNAT lists is shown; the fixed folder names are the only made-up entries.
import createDebug from 'debug';
import type { Assessor, Experiment, FileEntry, Owner, Project, Resource, Scan, ScopedResource, Subject, XnatApi } from '../xnat/types.js';
import { XnatError } from '../xnat/types.js';
import { PathError } from './errors.js';
import { ListingCache, timerMs } from './listing-cache.js';
import { buildFileTree, componentsOf, fileAt, Fingerprint, isTreeDir, lookupInTree, putInTree, type FileTree, type TreeDir } from './file-tree.js';
import { ResourceTimes } from './resource-times.js';
import { escapeName, scanFolderName, unescapeName } from './names.js';
import { WalkAhead } from './walk-ahead.js';
import { encodeFilePathForWrite } from '../xnat/paths.js';

const log = createDebug('xnatfs:catalogue');

export type DirNode =
  | { kind: 'root' }
  | { kind: 'projects' }
  | { kind: 'project'; project: string }
  | { kind: 'subjects'; project: string }
  | { kind: 'subject'; project: string; subject: Subject }
  | { kind: 'experiments'; project: string; subject: string | null }
  | { kind: 'experiment'; project: string; experiment: Experiment }
  | { kind: 'scans'; project: string; experiment: string }
  | { kind: 'scan'; project: string; experiment: string; scan: Scan }
  | { kind: 'assessors'; project: string; experiment: string }
  | { kind: 'assessor'; project: string; experiment: string; assessor: Assessor }
  | { kind: 'resources'; owner: Owner }
  | { kind: 'resource'; owner: Owner; resource: Resource }
  /** A folder inside a resource's files/ (components = [] is files/ itself); shownAt: FileNode's. */
  | { kind: 'folder'; owner: Owner; resource: Resource; components: string[]; tree: TreeDir; shownAt: number };

export interface FileNode {
  kind: 'file';
  owner: Owner;
  resource: Resource;
  components: string[];
  entry: FileEntry;
  /** Its modification time in ms: that of its resource's listing (resource-times.ts). */
  shownAt: number;
}

export type Node = DirNode | FileNode;

export interface CatalogueOptions {
  ttlMs: number;
  maxListings?: number;
  /** Times for files, kept across mounts (default: first seen by this process). */
  times?: ResourceTimes;
}

/** A subject read ahead in a walk gets the listings of this many of its experiments too. */
const WALK_EXPERIMENTS_PER_SUBJECT = 4;

const FIXED: Record<string, readonly string[]> = {
  root: ['projects'],
  project: ['subjects', 'experiments', 'resources'],
  subject: ['experiments', 'resources'],
  experiment: ['scans', 'resources', 'assessors'],
  scan: ['resources'],
  assessor: ['resources'],
  resource: ['files'],
};

export function ownerKey(owner: Owner): string {
  switch (owner.level) {
    case 'project':
      return `p:${owner.project}`;
    case 'subject':
      return `p:${owner.project}/s:${owner.subject}`;
    case 'experiment':
      return `p:${owner.project}/e:${owner.experiment}`;
    case 'scan':
      return `p:${owner.project}/e:${owner.experiment}/scan:${owner.scan}`;
    case 'assessor':
      return `p:${owner.project}/e:${owner.experiment}/a:${owner.assessor}`;
  }
}

export class Catalogue {
  readonly listings: ListingCache;
  /** Resolved paths, so repeated stats of the same path skip the walk. Cleared on any invalidation. */
  private readonly resolved = new Map<string, Node>();
  private readonly maxResolved = 200_000;
  private readonly keepResolved: boolean;
  /** Bumped by every invalidation, so a walk that started before it stores nothing stale. */
  private resolvedGeneration = 0;
  /** Scans (project:experiment:scan) whose files changed through this mount since their bulk listing. */
  private readonly changedScans = new Set<string>();
  /** Subjects and experiments entered one after another (find, du, cp -r): read ahead. */
  private readonly walk = new WalkAhead();
  private readonly times: ResourceTimes;

  constructor(
    private readonly client: XnatApi,
    options: CatalogueOptions,
  ) {
    this.times = options.times ?? new ResourceTimes(null);
    this.listings = new ListingCache({ ttlMs: options.ttlMs, maxEntries: options.maxListings ?? 20_000 });
    // Resolved nodes hold references into listings, so they may live no longer than those.
    this.keepResolved = options.ttlMs > 0;
    if (this.keepResolved) setInterval(() => this.resolved.clear(), timerMs(options.ttlMs)).unref();
  }

  // ---- listings (cached, single-flight) ----

  projects(): Promise<Project[]> {
    return this.listings.get('projects', () => this.client.listProjects());
  }
  subjects(project: string): Promise<Subject[]> {
    return this.listings.get(`subjects:${project}`, () => this.client.listSubjects(project));
  }
  experiments(project: string, subject: string | null): Promise<Experiment[]> {
    return this.listings.get(`experiments:${project}:${subject ?? ''}`, async () => {
      // A subject's experiments are a slice of the project's, when those are at hand.
      if (subject !== null) {
        const all = await this.listings.pending<Experiment[]>(`experiments:${project}:`)?.catch(() => null);
        if (all && all.every((e) => e.subjectId !== '')) return all.filter((e) => e.subjectId === subject);
      }
      return this.client.listExperiments(project, subject ?? undefined);
    });
  }
  scans(project: string, experiment: string): Promise<Scan[]> {
    return this.listings.get(`scans:${project}:${experiment}`, () => this.client.listScans(project, experiment));
  }
  assessors(project: string, experiment: string): Promise<Assessor[]> {
    return this.listings.get(`assessors:${project}:${experiment}`, () => this.client.listAssessors(project, experiment));
  }
  resources(owner: Owner): Promise<Resource[]> {
    return this.listings.get(`resources:${ownerKey(owner)}`, async () => {
      // The resources of an experiment, its scans and its assessors are slices of the
      // experiment's `?all=true` listing, when that is at hand.
      if (owner.level === 'experiment' || owner.level === 'scan' || owner.level === 'assessor') {
        const all = await this.listings.pending<ScopedResource[] | null>(`allresources:${owner.project}:${owner.experiment}`)?.catch(() => null);
        if (all) return all.filter(sliceOfAll(owner)).map(({ category: _c, catId: _i, ...r }) => r);
      }
      return this.client.listResources(owner);
    });
  }

  /** Resources of an experiment and all its scans from one request; null when the server can't. */
  private allResourcesOf(project: string, experiment: string): Promise<ScopedResource[] | null> {
    return this.listings.get(`allresources:${project}:${experiment}`, async () => {
      let all: ScopedResource[];
      try {
        all = await this.client.listAllResources(project, experiment);
      } catch (err) {
        return this.unlessUnsupported(err, `resources?all=true of ${experiment}`);
      }
      // A server that ignores `all` answers with the experiment's own resources only: taken at
      // its word, every scan would look empty. No scan resource at all while there are scans
      // means: ask each scan.
      if (!all.some((r) => r.category === 'scans') && (await this.scans(project, experiment)).length > 0) {
        log('resources?all=true of %s lists no scan resource; listing each scan', experiment);
        return null;
      }
      return all;
    });
  }

  /** null for the errors of a server that does not know a bulk form; the rest are rethrown. */
  private unlessUnsupported(err: unknown, what: string): null {
    if (err instanceof XnatError && (err.kind === 'not-found' || err.kind === 'bad-request' || err.kind === 'protocol')) {
      log('%s unavailable (%s); listing one by one', what, err.message);
      return null;
    }
    throw err;
  }

  /**
   * The kernel looks a path up one name at a time, each lookup waiting for its folder's listing.
   * At the fixed folders that lead down (P/subjects, E/scans) the next two levels are asked for
   * at once, so a cold deep path (dcm2niix …/scans/4/resources/DICOM/files) costs two round
   * trips of listings instead of five (the project list is fetched when the mount starts).
   */
  private lookAhead(loads: Array<() => Promise<unknown>>): void {
    for (const load of loads) void load().catch(() => undefined);
  }

  /** What walking into an experiment lists: its scans, all its resources and files, its assessors. */
  private experimentListings(project: string, experiment: string): void {
    this.lookAhead([
      () => this.scans(project, experiment),
      () => this.allResourcesOf(project, experiment),
      () => this.scanFilesOf(project, experiment),
      () => this.assessors(project, experiment),
    ]);
  }

  /** What walking into a subject lists: its resources, and its experiments' listings. */
  private subjectListings(project: string, subject: string): void {
    this.lookAhead([
      () => this.resources({ level: 'subject', project, subject }),
      async () => {
        for (const e of (await this.experiments(project, subject)).slice(0, WALK_EXPERIMENTS_PER_SUBJECT)) this.experimentListings(project, e.id);
      },
    ]);
  }

  /** The file tree of one resource. Scan resources come from one bulk listing per experiment. */
  fileTree(owner: Owner, resource: Resource): Promise<FileTree> {
    const key = `${ownerKey(owner)}:${resource.id}`;
    return this.listings.get(`files:${key}`, async () => {
      let tree: FileTree | null = null;
      if (owner.level === 'scan' && !this.changedScans.has(scanKey(owner))) {
        const bulk = await this.scanFilesOf(owner.project, owner.experiment);
        const mine = bulk?.get(`${owner.scan}\n${resource.label}`);
        // Nothing in the bulk listing for a resource that says it has files: ask the resource.
        if (bulk && (mine || !resource.fileCount)) tree = await buildFileTree(mine ?? []);
      }
      tree ??= await buildFileTree(await this.client.listFiles(owner, resource.id));
      const built = tree;
      tree.shownAt = this.times.timeOf(key, tree.fingerprint, (path) => fileAt(built, path));
      return tree;
    });
  }

  /** A resource's file tree if it is in memory (no request). */
  peekFileTree(owner: Owner, resource: Resource): FileTree | undefined {
    return this.listings.peek<FileTree>(`files:${ownerKey(owner)}:${resource.id}`);
  }

  /**
   * Every scan file of an experiment, grouped by scan id and resource label, from one request.
   * null when the server can't answer the bulk form (then each resource is listed on its own).
   */
  private scanFilesOf(project: string, experiment: string): Promise<Map<string, FileEntry[]> | null> {
    return this.listings.get(`scanfiles:${project}:${experiment}`, async () => {
      let all: Array<FileEntry & { scan: string }>;
      const prefix = `${project}:${experiment}:`;
      for (const k of this.changedScans) if (k.startsWith(prefix)) this.changedScans.delete(k);
      try {
        all = await this.client.listAllScanFiles(project, experiment);
      } catch (err) {
        return this.unlessUnsupported(err, `scans/ALL/files of ${experiment}`);
      }
      const groups = new Map<string, FileEntry[]>();
      for (const f of all) {
        const key = `${f.scan}\n${f.resourceLabel}`;
        let list = groups.get(key);
        if (!list) groups.set(key, (list = []));
        list.push(f);
      }
      return groups;
    });
  }

  // ---- invalidation after our own writes ----

  invalidateResources(owner: Owner): void {
    this.listings.invalidate(`resources:${ownerKey(owner)}`);
    if (owner.level === 'experiment' || owner.level === 'scan' || owner.level === 'assessor') {
      this.listings.invalidate(`allresources:${owner.project}:${owner.experiment}`);
    }
    this.forgetResolved();
  }

  /** After our own DELETE of a resource: its file times are of no more use (see ResourceTimes.forget). */
  forgetResource(owner: Owner, resource: Resource): void {
    const key = `${ownerKey(owner)}:${resource.id}`;
    this.listings.invalidate(`files:${key}`);
    this.times.forget(key);
    this.invalidateResources(owner);
  }

  /**
   * After our own DELETE of a file: take it out of the cached tree instead of listing the whole
   * resource again (rm -r of N files would otherwise cost N listings of N rows). Its folders stay,
   * empty, as on a disk. Without a cached tree, the listings are simply dropped.
   */
  forgetFile(owner: Owner, resource: Resource, components: readonly string[]): void {
    const tree = this.peekFileTree(owner, resource);
    const name = components[components.length - 1];
    const folder = tree && name !== undefined ? lookupInTree(tree, components.slice(0, -1)) : null;
    const entry = folder && isTreeDir(folder) ? folder.files.get(name!) : undefined;
    if (!tree || !folder || !isTreeDir(folder) || !entry) {
      this.invalidateFiles(owner, resource);
      return;
    }
    folder.files.delete(name!);
    // XNAT's next listing is known (unless someone else changes the resource meanwhile): record
    // it now, or that listing, here or at the next mount, would show every file as new again.
    const timesKey = `${ownerKey(owner)}:${resource.id}`;
    if (tree.fingerprint) {
      tree.fingerprint = Fingerprint.without(tree.fingerprint, entry);
      tree.shownAt = this.times.noteRemovedListed(timesKey, tree.fingerprint, entry);
    } else {
      tree.shownAt = this.times.noteRemoved(timesKey, entry); // after uploads XNAT has not listed yet
    }
    let dir: TreeDir | null = tree;
    dir.totalSize -= entry.size;
    for (const c of components.slice(0, -1)) {
      dir = dir.dirs.get(c) ?? null;
      if (!dir) break;
      dir.totalSize -= entry.size;
    }
    // The raw bulk listing would bring the file back when the tree is next built from it.
    if (owner.level === 'scan') {
      const bulk = this.listings.peek<Map<string, FileEntry[]> | null>(`scanfiles:${owner.project}:${owner.experiment}`);
      const key = `${owner.scan}\n${resource.label}`;
      const group = bulk?.get(key);
      if (group) bulk!.set(key, group.filter((f) => f !== entry));
    }
    this.forgetResolved();
  }

  /** After rmdir of an emptied folder inside files/: take it out of the cached tree too. */
  forgetFolder(owner: Owner, resource: Resource, components: readonly string[]): void {
    const tree = this.peekFileTree(owner, resource);
    const parent = tree ? lookupInTree(tree, components.slice(0, -1)) : null;
    if (parent && isTreeDir(parent)) parent.dirs.delete(components[components.length - 1]!);
    this.forgetResolved();
  }

  /**
   * Listed paths of a resource that start with `path` (XNAT deletes by prefix), from the cached
   * tree: only the folder holding `path` can have such names. undefined without a cached tree.
   */
  pathsStartingWith(owner: Owner, resource: Resource, components: readonly string[], path: string): string[] | undefined {
    const tree = this.peekFileTree(owner, resource);
    const folder = tree ? lookupInTree(tree, components.slice(0, -1)) : null;
    if (!folder || !isTreeDir(folder)) return undefined;
    const out: string[] = [];
    const walk = (d: TreeDir): void => {
      for (const f of d.files.values()) out.push(f.path);
      for (const sub of d.dirs.values()) walk(sub);
    };
    for (const f of folder.files.values()) if (f.path.startsWith(path)) out.push(f.path);
    for (const [name, sub] of folder.dirs) {
      if (unescapeName(name).startsWith(components.length > 0 ? unescapeName(components[components.length - 1]!) : '')) walk(sub);
    }
    return out.filter((p) => p.startsWith(path));
  }

  private forgetResolved(): void {
    this.resolvedGeneration++;
    this.resolved.clear();
  }

  invalidateFiles(owner: Owner, resource?: Resource): void {
    if (resource) this.listings.invalidate(`files:${ownerKey(owner)}:${resource.id}`);
    else this.listings.invalidate(`files:${ownerKey(owner)}:`, true);
    this.markScanChanged(owner);
    this.invalidateResources(owner);
  }

  /**
   * After our own upload of `uploaded` into `resourceLabel`. With the resource's tree in memory
   * the file is put into it (and into the experiment's bulk scan listing), so that `cp` of N
   * files costs N PUTs, not N PUTs and N listings of a growing resource. Only a name XNAT stores
   * exactly as sent is put in (XNAT 1.7–1.8 keep "%20" in an upload's name: the next listing
   * shows what it made of it). Otherwise only that resource's files are listed again; the
   * resource list is kept when it has the resource (an upload changes only its counts), and a
   * scan's files no longer come from the bulk listing, whose reloads (every scan file of the
   * session, 26 MB for 100,000 files) made `cp` into a scan resource ten times slower.
   */
  noteUploaded(owner: Owner, resourceLabel: string, uploaded: { path: string; size: number; changedAt?: number }): void {
    const known = this.knownResource(owner, resourceLabel);
    if (!known) return this.invalidateFiles(owner);
    const key = `files:${ownerKey(owner)}:${known.id}`;
    const tree = this.listings.peek<FileTree>(key);
    if (tree && storedAsSent(uploaded.path)) {
      // No digest: XNAT's is not known until listed; size and path are what was sent. No URI
      // either: reads then address the file by resource id and path.
      const entry: FileEntry = { path: uploaded.path, size: uploaded.size, digest: '', uri: '', resourceLabel: known.label, resourceId: known.id };
      const replaced = fileAt(tree, uploaded.path) ?? null;
      // The time of the upload, which XNAT's next listing keeps when it shows just this (Pending).
      tree.shownAt = this.times.noteUpload(`${ownerKey(owner)}:${known.id}`, tree.fingerprint, uploaded, replaced);
      putInTree(tree, entry);
      tree.fingerprint = ''; // XNAT's MD5 of the new file is not known until it lists it
      this.listings.staleLoads(key); // a listing under way may have been taken before the upload
      if (owner.level === 'scan') {
        const bulkKey = `scanfiles:${owner.project}:${owner.experiment}`;
        const bulk = this.listings.peek<Map<string, FileEntry[]> | null>(bulkKey);
        const group = `${owner.scan}\n${known.label}`;
        if (bulk) bulk.set(group, [...(bulk.get(group) ?? []).filter((f) => f.path !== entry.path), entry]);
        this.listings.staleLoads(bulkKey);
      }
      this.forgetResolved();
      return;
    }
    this.listings.invalidate(key);
    this.markScanChanged(owner);
    this.forgetResolved();
  }

  /** A file as the cached listings show it now, without any request (undefined if not in memory). */
  peekFile(owner: Owner, resourceLabel: string, path: string): FileNode | undefined {
    const resource = this.knownResource(owner, resourceLabel);
    const tree = resource && this.peekFileTree(owner, resource);
    if (!resource || !tree) return undefined;
    const components = componentsOf(path);
    const hit = lookupInTree(tree, components);
    return hit && !isTreeDir(hit) ? { kind: 'file', owner, resource, components, entry: hit, shownAt: tree.shownAt } : undefined;
  }

  private knownResource(owner: Owner, label: string): Resource | undefined {
    return this.listings.peek<Resource[]>(`resources:${ownerKey(owner)}`)?.find((r) => r.label === label);
  }

  /** A scan changed by our writes lists its resources' files on its own until the bulk is re-read. */
  private markScanChanged(owner: Owner): void {
    if (owner.level !== 'scan') return;
    if (this.changedScans.size >= 10_000) {
      this.listings.invalidate('scanfiles:', true);
      this.changedScans.clear();
    }
    this.changedScans.add(scanKey(owner));
  }

  // ---- path resolution ----

  /**
   * Resolve a mount path ("/projects/P/…") to a node. Throws PathError when XNAT lists no such
   * name or the path goes through a file, and the client's XnatError when a listing fails.
   */
  async resolve(path: string): Promise<Node> {
    const cached = this.resolved.get(path);
    if (cached) return cached;
    const generation = this.resolvedGeneration;
    const components = path.split('/').filter((c) => c !== '');
    // Start from the nearest ancestor resolved before (stat after readdir: the parent).
    let start = components.length - 1;
    let node: Node | undefined;
    for (; start > 0 && !node; start--) node = this.resolved.get(`/${components.slice(0, start).join('/')}`);
    let i = node ? start + 1 : 0;
    node ??= { kind: 'root' };
    for (; i < components.length; i++) {
      if (node.kind === 'file') throw new PathError('not-a-folder', `${path}: not a folder`);
      const child: Node | null = await this.child(node, components[i]!);
      if (!child) throw new PathError('not-found', `${path}: no such entry`);
      node = child;
    }
    if (!this.keepResolved || generation !== this.resolvedGeneration) return node; // invalidated meanwhile
    if (this.resolved.size >= this.maxResolved) this.resolved.clear();
    this.resolved.set(path, node);
    return node;
  }

  /** A node resolved earlier, without any request; undefined if not in memory. */
  peekResolved(path: string): Node | undefined {
    return this.resolved.get(path);
  }

  /** Names in a folder, escaped for the path. */
  async list(node: DirNode): Promise<string[]> {
    switch (node.kind) {
      case 'root':
      case 'project':
      case 'experiment':
      case 'scan':
      case 'assessor':
      case 'resource':
        return [...FIXED[node.kind]!];
      case 'subject':
        return [...FIXED.subject!];
      case 'projects':
        return (await this.projects()).map((p) => escapeName(p.id));
      case 'subjects': {
        const subjects = await this.subjects(node.project);
        this.walk.listed(`s:${node.project}`, subjects.map((x) => x.id));
        return subjects.map((x) => escapeName(x.label));
      }
      case 'experiments': {
        const experiments = await this.experiments(node.project, node.subject);
        this.walk.listed(`e:${node.project}`, experiments.map((e) => e.id));
        return experiments.map((e) => escapeName(e.label));
      }
      case 'scans': {
        const scans = await this.scans(node.project, node.experiment);
        // Whoever lists the scans usually goes into them (ls -R, find, a file manager): fetch
        // their resource lists together rather than one round trip per scan later.
        if (scans.length <= 32) {
          for (const s of scans) {
            void this.resources({ level: 'scan', project: node.project, experiment: node.experiment, scan: s.id }).catch(() => undefined);
          }
        }
        return scans.map((s) => scanFolderName(s.id, s.type));
      }
      case 'assessors':
        return (await this.assessors(node.project, node.experiment)).map((a) => escapeName(a.label));
      case 'resources':
        return (await this.resources(node.owner)).map((r) => escapeName(r.label));
      case 'folder':
        return [...node.tree.dirs.keys(), ...node.tree.files.keys()];
    }
  }

  private async child(node: DirNode, name: string): Promise<Node | null> {
    const fixed = (allowed: string): boolean => name === allowed;
    switch (node.kind) {
      case 'root':
        return fixed('projects') ? { kind: 'projects' } : null;
      case 'projects': {
        const id = unescapeName(name);
        const p = (await this.projects()).find((x) => x.id === id);
        return p ? { kind: 'project', project: p.id } : null;
      }
      case 'project':
        if (fixed('subjects')) {
          this.lookAhead([() => this.subjects(node.project), () => this.experiments(node.project, null)]);
          return { kind: 'subjects', project: node.project };
        }
        if (fixed('experiments')) return { kind: 'experiments', project: node.project, subject: null };
        if (fixed('resources')) return { kind: 'resources', owner: { level: 'project', project: node.project } };
        return null;
      case 'subjects': {
        const s = byLabelOrId(await this.subjects(node.project), unescapeName(name));
        return s ? { kind: 'subject', project: node.project, subject: s } : null;
      }
      case 'subject':
        if (fixed('experiments') || fixed('resources')) {
          for (const next of this.walk.enter(`s:${node.project}`, node.subject.id)) this.subjectListings(node.project, next);
        }
        if (fixed('experiments')) return { kind: 'experiments', project: node.project, subject: node.subject.id };
        if (fixed('resources'))
          return { kind: 'resources', owner: { level: 'subject', project: node.project, subject: node.subject.id } };
        return null;
      case 'experiments': {
        const e = byLabelOrId(await this.experiments(node.project, node.subject), unescapeName(name));
        return e ? { kind: 'experiment', project: node.project, experiment: e } : null;
      }
      case 'experiment': {
        const e = node.experiment.id;
        if (fixed('scans') || fixed('assessors') || fixed('resources')) {
          for (const next of this.walk.enter(`e:${node.project}`, e)) this.experimentListings(node.project, next);
        }
        if (fixed('scans')) {
          this.lookAhead([() => this.scans(node.project, e), () => this.allResourcesOf(node.project, e), () => this.scanFilesOf(node.project, e)]);
          return { kind: 'scans', project: node.project, experiment: e };
        }
        if (fixed('assessors')) return { kind: 'assessors', project: node.project, experiment: e };
        if (fixed('resources'))
          return { kind: 'resources', owner: { level: 'experiment', project: node.project, experiment: e } };
        return null;
      }
      case 'scans': {
        const list = await this.scans(node.project, node.experiment);
        // "<ID>-<type>" as listed; the bare ID resolves too (REST-style paths) but is not listed.
        const s = list.find((x) => scanFolderName(x.id, x.type) === name) ?? list.find((x) => escapeName(x.id) === name);
        if (!s) return null;
        // The way down from a scan needs its resources and the experiment's bulk file listing.
        // Usually both were asked for at E/scans already (single-flight: no second request);
        // this covers a walk that started below a cached E/scans after its listings expired.
        const scanOwner: Owner = { level: 'scan', project: node.project, experiment: node.experiment, scan: s.id };
        void this.resources(scanOwner).catch(() => undefined);
        void this.scanFilesOf(node.project, node.experiment).catch(() => undefined);
        return { kind: 'scan', project: node.project, experiment: node.experiment, scan: s };
      }
      case 'scan':
        return fixed('resources')
          ? {
              kind: 'resources',
              owner: { level: 'scan', project: node.project, experiment: node.experiment, scan: node.scan.id },
            }
          : null;
      case 'assessors': {
        const a = byLabelOrId(await this.assessors(node.project, node.experiment), unescapeName(name));
        return a ? { kind: 'assessor', project: node.project, experiment: node.experiment, assessor: a } : null;
      }
      case 'assessor':
        return fixed('resources')
          ? {
              kind: 'resources',
              owner: { level: 'assessor', project: node.project, experiment: node.experiment, assessor: node.assessor.id },
            }
          : null;
      case 'resources': {
        const r = byLabelOrId(await this.resources(node.owner), unescapeName(name));
        return r ? { kind: 'resource', owner: node.owner, resource: r } : null;
      }
      case 'resource': {
        if (!fixed('files')) return null;
        const tree = await this.fileTree(node.owner, node.resource);
        return { kind: 'folder', owner: node.owner, resource: node.resource, components: [], tree, shownAt: tree.shownAt };
      }
      case 'folder': {
        const found = lookupInTree(node.tree, [name]);
        if (!found) return null;
        const components = [...node.components, name];
        if (isTreeDir(found)) return { kind: 'folder', owner: node.owner, resource: node.resource, components, tree: found, shownAt: node.shownAt };
        return { kind: 'file', owner: node.owner, resource: node.resource, components, entry: found, shownAt: node.shownAt };
      }
    }
  }
}

/** Which rows of an experiment's `resources?all=true` listing belong to `owner` (xnat-api.md §2.4). */
function sliceOfAll(owner: Extract<Owner, { experiment: string }>): (r: ScopedResource) => boolean {
  switch (owner.level) {
    case 'experiment':
      return (r) => r.category === 'resources';
    case 'scan':
      return (r) => r.category === 'scans' && r.catId === owner.scan;
    case 'assessor':
      return (r) => r.category === 'assessors' && r.catId === owner.assessor;
  }
}

/** Listed by label; the accession id (or a resource's numeric id) resolves too, unlisted. */
function byLabelOrId<T extends { label: string; id: string }>(list: readonly T[], name: string): T | undefined {
  return list.find((x) => x.label === name) ?? list.find((x) => x.id === name);
}

export function isDir(node: Node): node is DirNode {
  return node.kind !== 'file';
}

function scanKey(owner: Owner & { level: 'scan' }): string {
  return `${owner.project}:${owner.experiment}:${owner.scan}`;
}

/** XNAT stores this path as sent: every character may go raw in a URL path (see encodeFilePathForWrite). */
function storedAsSent(path: string): boolean {
  try {
    return encodeFilePathForWrite(path) === path;
  } catch {
    return false;
  }
}
