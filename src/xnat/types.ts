// The XNAT client's public contract. The catalogue, content and fs layers depend only on
// this file; the HTTP client (client.ts) and the in-memory test client both implement XnatApi.
import type { Readable } from 'node:stream';
import type { Standing } from './slots.js';

export { Standing } from './slots.js';

export interface Project {
  id: string;
  name: string;
  secondaryId: string;
  description: string;
}

export interface Subject {
  /** Accession id, e.g. XNAT_S00001. */
  id: string;
  label: string;
  project: string;
  insertDate: string;
}

export interface Experiment {
  /** Accession id, e.g. XNAT_E00001. */
  id: string;
  label: string;
  project: string;
  xsiType: string;
  /** "" when XNAT has no date. */
  date: string;
  insertDate: string;
  /** Accession id of the subject when the listing carries it ("" otherwise). */
  subjectId: string;
}

export interface Scan {
  id: string;
  type: string;
  seriesDescription: string;
  xsiType: string;
  quality: string;
}

export interface Assessor {
  /** Accession id. */
  id: string;
  label: string;
  xsiType: string;
}

export interface Resource {
  /** Numeric xnat_abstractresource_id as a string. */
  id: string;
  label: string;
  format: string;
  content: string;
  /** null when XNAT sends "". */
  fileCount: number | null;
  fileSize: number | null;
}

/** A resource from an experiment's `resources?all=true`, with what it hangs on. */
export interface ScopedResource extends Resource {
  /** `resources` (the experiment's own), `scans` or `assessors`. */
  category: string;
  /** The scan or assessor id for those categories, else the experiment id. */
  catId: string;
}

export interface FileEntry {
  /** Path relative to the resource's files/ folder, '/'-separated, decoded (e.g. "sub/folder/3.dcm"). */
  path: string;
  size: number;
  /** MD5 hex, or "" when XNAT has none. */
  digest: string;
  /** The URI exactly as listed by XNAT (absolute path on the server, not encoded). */
  uri: string;
  /** Resource label (XNAT's "collection" column). */
  resourceLabel: string;
  /** Numeric resource id (XNAT's "cat_ID" column). */
  resourceId: string;
}

/**
 * Where a resource hangs. Experiments, subjects and assessors are given by accession id
 * (what XNAT puts in every URI); project by its ID.
 */
export type Owner =
  | { level: 'project'; project: string }
  | { level: 'subject'; project: string; subject: string }
  | { level: 'experiment'; project: string; experiment: string }
  | { level: 'scan'; project: string; experiment: string; scan: string }
  | { level: 'assessor'; project: string; experiment: string; assessor: string };

/** A file as the content layer addresses it. */
export interface FileRef {
  owner: Owner;
  /** Resource label or numeric id. */
  resource: string;
  path: string;
  /** From the listing; used for validation and cache keys. */
  size: number;
  digest: string;
  /** Listed URI when known; preferred for GETs because it carries XNAT's own ids. */
  uri?: string;
}

export interface ReadResult {
  /** 200: whole body from offset 0; 206: the requested range. */
  status: 200 | 206;
  /** First byte offset of `body` within the file. */
  start: number;
  /** Total file length if the server said (Content-Length or Content-Range). */
  totalSize: number | null;
  lastModified: Date | null;
  body: Readable;
}

export interface ReadOptions {
  /** Ask for bytes [start, end) with Range; the server may ignore it and send 200. */
  start?: number;
  end?: number;
  signal?: AbortSignal;
  /**
   * A prefetch: yields to reads a program waits for, and is refused while XNAT does not answer.
   * A Standing lets the owner promote it to a read a program waits for, also while it is queued.
   */
  background?: boolean | Standing;
}

export type UploadOptions = { overwrite: boolean } & (
  | {
      /** Local file streamed as the body; never read into memory. */
      sourcePath: string;
      size: number;
    }
  | {
      /**
       * The bytes of a file still being written, sent as they come: the length is not known, so
       * the body goes chunked. Called again for each attempt (a retry after re-login starts over).
       */
      stream: () => AsyncIterable<Buffer>;
      /** Aborts the request; XNAT then stores nothing (it parses the whole multipart body first). */
      signal?: AbortSignal;
    }
);

export type XnatErrorKind =
  | 'unauthorized' // 401 after re-login: bad credentials or revoked token
  | 'forbidden' // 403
  | 'not-found' // 404
  | 'conflict' // 409 (resource exists)
  | 'duplicate' // 200 {"duplicates":[…]}: the server kept the old file
  | 'bad-request' // other 4xx
  | 'server' // 5xx after retries
  | 'network' // connection failures, resets, truncated bodies, after retries
  | 'protocol'; // the server answered something we cannot parse

export class XnatError extends Error {
  readonly kind: XnatErrorKind;
  readonly status: number | null;
  /**
   * The server did not answer in time (connect, headers or body timeout, or it had stopped
   * answering altogether): the whole wait has been spent, so trying again at once only doubles it.
   */
  readonly timedOut: boolean;
  constructor(kind: XnatErrorKind, message: string, status: number | null = null, options?: { cause?: unknown; timedOut?: boolean }) {
    super(message, options);
    this.name = 'XnatError';
    this.kind = kind;
    this.status = status;
    this.timedOut = options?.timedOut ?? false;
  }
}

export interface XnatApi {
  /** Server base URL without trailing slash, for messages only (never with credentials). */
  readonly baseUrl: string;
  listProjects(): Promise<Project[]>;
  listSubjects(project: string): Promise<Subject[]>;
  /** Every experiment of a project (subjectId filled), or of one subject. Excludes assessors. */
  listExperiments(project: string, subject?: string): Promise<Experiment[]>;
  listScans(project: string, experiment: string): Promise<Scan[]>;
  listAssessors(project: string, experiment: string): Promise<Assessor[]>;
  listResources(owner: Owner): Promise<Resource[]>;
  /** The resources of an experiment and of all its scans and assessors in one request (`?all=true`). */
  listAllResources(project: string, experiment: string): Promise<ScopedResource[]>;
  /** Every file of one resource, recursively. */
  listFiles(owner: Owner, resource: string): Promise<FileEntry[]>;
  /**
   * Every file of every scan resource of an experiment in one request
   * (`/data/experiments/{E}/scans/ALL/files`); entries carry their scan id.
   */
  listAllScanFiles(project: string, experiment: string): Promise<Array<FileEntry & { scan: string }>>;
  readFile(file: FileRef, options?: ReadOptions): Promise<ReadResult>;
  /**
   * Streams `…/resources/{R}/files?format=zip` (with `&compression=0-9` when given); the caller
   * checks members against the listing.
   */
  downloadResourceZip(owner: Owner, resource: string, options?: { signal?: AbortSignal; compression?: number; background?: boolean }): Promise<Readable>;
  /** PUT …/resources/{label}. Throws XnatError('conflict') when it exists. */
  createResource(owner: Owner, label: string): Promise<void>;
  /** Multipart PUT of a local file. Throws XnatError('duplicate') if XNAT kept an old copy. */
  uploadFile(owner: Owner, resource: string, path: string, options: UploadOptions): Promise<void>;
  /**
   * DELETE a file or a whole folder inside a resource. XNAT deletes by prefix, so the client
   * refuses ('conflict') when other files start with `path`; `knownPaths` (every listed path
   * that starts with `path`) spares it a listing of the resource to find out.
   */
  deleteFile(owner: Owner, resource: string, path: string, knownPaths?: readonly string[]): Promise<void>;
  deleteResource(owner: Owner, resource: string): Promise<void>;
  /** Log out (DELETE /data/JSESSION) and close pooled connections. */
  close(): Promise<void>;
}
