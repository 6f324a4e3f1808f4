// What the mount shows that XNAT does not have yet: files being written (spooled locally until
// their upload succeeds) and folders made inside a resource's files/ (they exist only here until
// a file lands in them). Keyed by mount path; the fs layer consults it before the catalogue.
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { StreamingUpload } from '../content/streaming-upload.js';
import type { FileRef, Owner } from '../xnat/types.js';

/** Where in XNAT a path inside a resource's files/ lands. */
export interface Target {
  owner: Owner;
  /** Resource label (uploads auto-create by label) and id when known (listings are keyed by id). */
  resourceLabel: string;
  /** Escaped path components below files/. */
  components: string[];
}

export interface PendingFile {
  path: string;
  target: Target;
  spoolPath: string;
  /** Open on the spool file while handles are open. */
  fh: FileHandle | null;
  fhOpening: Promise<FileHandle> | null;
  size: number;
  /** Shown while pending: the last change here, or the time every listed file shows. */
  mtime: Date;
  /**
   * Created, written or truncated through this mount, not merely opened for writing (touch
   * opens O_WRONLY): a new version of the file, whose times a copy may set (see utimens).
   */
  changed: boolean;
  /** Handles open on this file. */
  opens: number;
  /** Bytes changed since the last successful upload (or never uploaded). */
  dirty: boolean;
  /** Unlinked (or replaced by a rename) while open: never uploaded again. */
  deleted: boolean;
  /** XNAT already has a file at the target: uploads must replace it. */
  overwrite: boolean;
  /** That file as listed (its cached bytes are dropped once the upload replaced it). */
  replaces: FileRef | null;
  /** Spool holds no bytes yet but stands for the server's current file (filled on first need). */
  lazyFromServer: boolean;
  /** The fill of a lazy spool in progress. */
  populating: Promise<void> | null;
  /** Foreground upload in progress. */
  uploading: Promise<void> | null;
  /** Handed to the uploader's background retries. */
  retrying: boolean;
  /** Timer that uploads a file changed without an open handle (truncate(2)). */
  idleUpload: NodeJS.Timeout | null;
  /** Every write since the file was emptied appended at its end: an upload can follow them. */
  appending: boolean;
  /** Where the next appending write must start (writes may complete out of order). */
  appendEnd: number;
  /** Writes in progress. */
  writing: number;
  /** The upload following the writes, started once the file is large enough (Uploader.startStreaming). */
  streaming: StreamingUpload | null;
}

export interface LocalDir {
  path: string;
  target: Target;
}

export class WriteOverlay {
  readonly files = new Map<string, PendingFile>();
  readonly dirs = new Map<string, LocalDir>();
  private readonly children = new Map<string, Set<string>>();

  addFile(f: PendingFile): void {
    this.files.set(f.path, f);
    this.link(f.path);
  }

  addDir(d: LocalDir): void {
    this.dirs.set(d.path, d);
    this.link(d.path);
  }

  removeFile(path: string): void {
    if (this.files.delete(path)) this.unlinkChild(path);
  }

  removeDir(path: string): void {
    if (this.dirs.delete(path)) this.unlinkChild(path);
  }

  /** Names the overlay adds in a folder. */
  childrenOf(dirPath: string): string[] {
    return [...(this.children.get(dirPath) ?? [])];
  }

  hasChildren(dirPath: string): boolean {
    return (this.children.get(dirPath)?.size ?? 0) > 0;
  }

  bySpool(spoolPath: string): PendingFile | undefined {
    for (const f of this.files.values()) if (f.spoolPath === spoolPath) return f;
    return undefined;
  }

  private link(path: string): void {
    const parent = dirname(path);
    let set = this.children.get(parent);
    if (!set) this.children.set(parent, (set = new Set()));
    set.add(basename(path));
  }

  private unlinkChild(path: string): void {
    if (this.files.has(path) || this.dirs.has(path)) return;
    const parent = dirname(path);
    const set = this.children.get(parent);
    set?.delete(basename(path));
    if (set?.size === 0) this.children.delete(parent);
  }
}
