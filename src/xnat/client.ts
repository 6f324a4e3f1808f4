// The HTTP implementation of XnatApi: REST paths (paths.ts) + session (auth.ts) + parsing
// (resultset.ts, records.ts). Everything here speaks XNAT's real dialect (xnat-api.md).
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import createDebug from 'debug';
import { Session } from './auth.js';
import {
  describeCredentials,
  resolveCredentials,
  type CredentialOptions,
  type ResolvedCredentials,
} from './credentials.js';
import { errorForStatus } from './errors.js';
import { checkHostExists, headerValue, HttpClient, readText, type HttpRequest, type RetryOptions, type Timeouts } from './http.js';
import { encodeFilePath, encodeFilePathForWrite, filesPath, listPaths, requestPathFromUri, resourcePath, resourcesPath, unstorablePath } from './paths.js';
import {
  toAssessor,
  toExperiment,
  toFileEntry,
  toProject,
  toResource,
  toScan,
  toScanFileEntry,
  toScopedResource,
  toSubject,
} from './records.js';
import type { Row } from './resultset.js';
import { parseRows } from './resultset-slices.js';
import {
  XnatError,
  type Assessor,
  type Experiment,
  type FileEntry,
  type FileRef,
  type Owner,
  type Project,
  type ReadOptions,
  type ReadResult,
  type ScopedResource,
  type Resource,
  type Scan,
  type Subject,
  type UploadOptions,
  type XnatApi,
} from './types.js';

const log = createDebug('xnatfs:http');

export interface XnatClientOptions {
  /** http(s)://host[:port][/context], with or without trailing slash. No password in it. */
  baseUrl: string;
  /** User name or alias token; the password comes from env, netrc or the prompt. */
  user?: string;
  /** Password or token secret, only from a non-argv source (config, programmatic use). */
  password?: string;
  /** Reuse an existing JSESSIONID (--jsession); no credentials, no re-login. */
  jsession?: string;
  /** Already resolved credentials; skips resolution. */
  credentials?: ResolvedCredentials;
  /** Environment for XNAT_USER / XNAT_PASS / XNAT_JSESSION / NETRC (default process.env). */
  env?: NodeJS.ProcessEnv;
  netrcFile?: string;
  /** Allow a terminal prompt (default: stdin is a TTY). */
  interactive?: boolean;
  promptIO?: CredentialOptions['promptIO'];
  /** Requests in flight at once (default 8). */
  maxConcurrency?: number;
  /** Extra CA certificate (PEM) trusted in addition to the system roots. */
  caFile?: string;
  timeouts?: Timeouts;
  retry?: RetryOptions;
  /** DNS lookup of the server's host before the credentials are looked for (tests replace it). */
  lookupHost?: (host: string) => Promise<unknown>;
}

/**
 * Validate and normalise a base URL: scheme http(s), no credentials, no trailing slash, and no
 * REST path. A URL copied from a REST call (…/data, …/REST/projects/P) is cut before /data or
 * /REST, which xnatfs adds itself; `dropped` says what was cut. So every spelling of one server
 * names the same cache folder.
 */
export function normalizeBaseUrl(raw: string): { baseUrl: string; user?: string; dropped?: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new XnatError('bad-request', `'${raw}' is not a URL: give the XNAT address like https://xnat.example.org`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new XnatError('bad-request', `XNAT URL must start with https:// or http:// (got ${url.protocol})`);
  }
  if (url.password) {
    throw new XnatError('bad-request', 'do not put a password in the XNAT URL (it would show in the process list): use XNAT_PASS or ~/.netrc');
  }
  const user = url.username ? decodeURIComponent(url.username) : undefined;
  url.username = '';
  url.search = '';
  url.hash = '';
  let path = url.pathname.replace(/\/+$/, '');
  // Only /data or /REST at the end, or followed by one of XNAT's own REST segments: a context
  // path that happens to be called data (https://host/data/xnat) is kept.
  const rest = /\/(?:data|REST)(?:\/(?:archive|projects|subjects|experiments|services|JSESSION|auth|prearchive|user|version)(?:\/.*)?)?$/.exec(path);
  const dropped = rest ? path.slice(rest.index) : undefined;
  if (rest) path = path.slice(0, rest.index);
  return { baseUrl: `${url.origin}${path}`, ...(user ? { user } : {}), ...(dropped ? { dropped } : {}) };
}

export async function createXnatClient(options: XnatClientOptions): Promise<XnatClient> {
  const { baseUrl, user: urlUser } = normalizeBaseUrl(options.baseUrl);
  if (!options.credentials) await checkHostExists(baseUrl, options.lookupHost);
  const credentials =
    options.credentials ??
    (await resolveCredentials({
      baseUrl,
      ...(options.user ?? urlUser ? { user: options.user ?? urlUser } : {}),
      ...(options.password !== undefined ? { password: options.password } : {}),
      ...(options.jsession !== undefined ? { jsession: options.jsession } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.netrcFile ? { netrcFile: options.netrcFile } : {}),
      ...(options.interactive !== undefined ? { interactive: options.interactive } : {}),
      ...(options.promptIO ? { promptIO: options.promptIO } : {}),
    }));
  const http = await HttpClient.create({
    baseUrl,
    ...(options.maxConcurrency !== undefined ? { maxConcurrency: options.maxConcurrency } : {}),
    ...(options.caFile ? { caFile: options.caFile } : {}),
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
    ...(options.retry ? { retry: options.retry } : {}),
  });
  const session = new Session(http, credentials);
  try {
    await session.start(); // fail fast on a wrong password, before anything is mounted
  } catch (err) {
    await http.close();
    throw err;
  }
  log('connected to %s with %s', baseUrl, describeCredentials(credentials));
  return new XnatClient(http, session, credentials);
}

const JSON_Q = 'format=json';
const COLUMNS = {
  subjects: 'ID,label,project,insert_date,URI',
  experiments: 'ID,label,project,date,xsiType,insert_date,subject_ID,URI',
  scans: 'ID,type,series_description,xsiType,quality,URI',
};

export class XnatClient implements XnatApi {
  readonly baseUrl: string;

  constructor(
    private readonly http: HttpClient,
    private readonly session: Session,
    readonly credentials: ResolvedCredentials,
  ) {
    this.baseUrl = http.baseUrl;
  }

  /** How this client authenticated, for a log line (no secret). */
  get authDescription(): string {
    return describeCredentials(this.credentials);
  }

  /** Logins performed so far (1 after start with credentials). */
  get logins(): number {
    return this.session.logins;
  }

  async listProjects(): Promise<Project[]> {
    return this.list(listPaths.projects(), JSON_Q, toProject);
  }

  async listSubjects(project: string): Promise<Subject[]> {
    return this.list(listPaths.subjects(project), `${JSON_Q}&columns=${COLUMNS.subjects}`, toSubject);
  }

  async listExperiments(project: string, subject?: string): Promise<Experiment[]> {
    // The project/subject experiment lists are rooted at xnat:subjectAssessorData: no assessors.
    const experiments = await this.list(listPaths.experiments(project, subject), `${JSON_Q}&columns=${COLUMNS.experiments}`, toExperiment);
    // Listed under a subject, the subject is known even where the server omits subject_ID.
    if (subject) for (const e of experiments) if (e.subjectId === '') e.subjectId = subject;
    return experiments;
  }

  async listScans(_project: string, experiment: string): Promise<Scan[]> {
    return this.list(listPaths.scans(experiment), `${JSON_Q}&columns=${COLUMNS.scans}`, toScan);
  }

  async listAssessors(_project: string, experiment: string): Promise<Assessor[]> {
    return this.list(listPaths.assessors(experiment), JSON_Q, toAssessor);
  }

  async listResources(owner: Owner): Promise<Resource[]> {
    return this.list(resourcesPath(owner), JSON_Q, toResource);
  }

  async listAllResources(_project: string, experiment: string): Promise<ScopedResource[]> {
    return this.list(listPaths.allResources(experiment), `${JSON_Q}&all=true`, toScopedResource);
  }

  async listFiles(owner: Owner, resource: string): Promise<FileEntry[]> {
    return this.list(filesPath(owner, resource), JSON_Q, toFileEntry);
  }

  async listAllScanFiles(_project: string, experiment: string): Promise<Array<FileEntry & { scan: string }>> {
    return this.list(listPaths.allScanFiles(experiment), JSON_Q, toScanFileEntry);
  }

  async readFile(file: FileRef, options: ReadOptions = {}): Promise<ReadResult> {
    const path = file.uri
      ? requestPathFromUri(file.uri, this.http.contextPath)
      : filesPath(file.owner, file.resource, file.path);
    const start = options.start ?? 0;
    const end = options.end;
    if (start < 0 || (end !== undefined && end <= start)) {
      throw new RangeError(`bad byte range [${start}, ${end}) for ${file.path}`);
    }
    const headers: Record<string, string> = {};
    if (start > 0 || end !== undefined) headers['range'] = `bytes=${start}-${end !== undefined ? end - 1 : ''}`;
    const req: HttpRequest = { method: 'GET', path, headers, ...(options.signal ? { signal: options.signal } : {}), ...(options.background ? { background: options.background } : {}) };
    // With XNAT's pref allowHtmlResourceRendering on, an .html file comes as text/html without
    // `attachment` (xnat-api.md §2.6): a report holding a login form is content, not a login page
    // (a real expiry is a 401; a page served instead of the file fails the size/MD5 check).
    const res = await this.session.request(req, { htmlIsContent: /\.html?$/i.test(file.path) });
    if (res.status !== 200 && res.status !== 206) {
      throw await this.failure(req, res.status, res.headers, res.body);
    }
    const lastModifiedRaw = headerValue(res.headers, 'last-modified');
    const lm = lastModifiedRaw ? new Date(lastModifiedRaw) : null;
    const lastModified = lm && !Number.isNaN(lm.getTime()) ? lm : null;
    const length = toInt(headerValue(res.headers, 'content-length'));
    const body = this.guardBody(res.body, req);
    if (res.status === 206) {
      const cr = parseContentRange(headerValue(res.headers, 'content-range'));
      if (!cr) {
        body.destroy();
        throw new XnatError('protocol', `XNAT at ${this.baseUrl} sent 206 without a usable Content-Range for GET ${stripQuery(path)}`, 206);
      }
      return { status: 206, start: cr.start, totalSize: cr.total, lastModified, body };
    }
    return { status: 200, start: 0, totalSize: length, lastModified, body };
  }

  async downloadResourceZip(owner: Owner, resource: string, options: { signal?: AbortSignal; compression?: number; background?: boolean } = {}): Promise<Readable> {
    const level = options.compression !== undefined ? `&compression=${Math.max(0, Math.min(9, Math.round(options.compression)))}` : '';
    const req: HttpRequest = {
      method: 'GET',
      path: `${filesPath(owner, resource)}?format=zip${level}`,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.background ? { background: true } : {}),
    };
    const res = await this.session.request(req);
    if (res.status !== 200) throw await this.failure(req, res.status, res.headers, res.body);
    return this.guardBody(res.body, req);
  }

  async createResource(owner: Owner, label: string): Promise<void> {
    const req: HttpRequest = { method: 'PUT', path: resourcePath(owner, label), retry: 'once' };
    const res = await this.session.requestText(req);
    if (res.status === 200 || res.status === 201) return;
    if (res.status === 409) {
      throw new XnatError('conflict', `resource '${label}' already exists at ${describeOwner(owner)} on ${this.baseUrl}`, 409);
    }
    throw errorForStatus(this.ctx(req), res.status, res.text, headerValue(res.headers, 'content-type'));
  }

  async uploadFile(owner: Owner, resource: string, path: string, options: UploadOptions): Promise<void> {
    const { overwrite } = options;
    if ('sourcePath' in options) {
      const { sourcePath, size } = options;
      // Local problems, not XNAT's answer (so no XnatError): its caller must not take them for a
      // refusal that no retry can mend. A file that grew since `size` was taken (a writer still
      // appending) is fine: its first `size` bytes are sent, and the caller uploads again later.
      let actual: number;
      try {
        actual = (await stat(sourcePath)).size;
      } catch (err) {
        throw new Error(`cannot read the local file ${sourcePath} to upload (${(err as NodeJS.ErrnoException).code ?? err})`, { cause: err });
      }
      if (actual < size) {
        throw new Error(`local file ${sourcePath} has ${actual} bytes, fewer than the ${size} to upload; it was truncated meanwhile`);
      }
    }
    // Where XNAT will store it: the URL path when it survives XNAT's decoding (paths.ts), else
    // (a top-level name) no URL path and the name in the multipart filename, which XNAT uses then.
    const unstorable = unstorablePath(path);
    if (unstorable) throw new XnatError('bad-request', unstorable);
    const urlPath = encodeFilePathForWrite(path);
    const boundary = `----xnatfs${randomBytes(12).toString('hex')}`;
    // With a URL path the part's filename is ignored but must be present.
    const filename = urlPath === null ? path : basename(path).replace(/[^\x20-\x7e]|["\\]/g, '_') || 'file';
    const pre = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      'utf8',
    );
    const post = Buffer.from(`\r\n--${boundary}--\r\n`);
    const target = urlPath === null ? filesPath(owner, resource) : filesPath(owner, resource, path, urlPath);
    const req: HttpRequest = {
      method: 'PUT',
      // No inbody=true: XNAT answers 406 to multipart combined with inbody.
      path: `${target}${overwrite ? '?overwrite=true' : ''}`,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      // Replacing is idempotent; creating is not (a retry could meet our own first copy).
      retry: overwrite ? 'idempotent' : 'once',
    };
    if ('sourcePath' in options) {
      const { sourcePath, size } = options;
      req.headers!['content-length'] = String(pre.length + size + post.length);
      req.body = () => Readable.from(multipart(pre, fileBytes(sourcePath, size), post), { objectMode: false });
      // Only when longer: a timeout at the usual value still tells that XNAT has gone silent.
      const answerMs = uploadAnswerTimeoutMs(size, this.http.timeouts.headersMs);
      if (answerMs !== this.http.timeouts.headersMs) req.headersTimeoutMs = answerMs;
    } else {
      // Chunked, and no headers timeout: the caller watches a body that follows a writer.
      req.body = () => Readable.from(multipart(pre, options.stream(), post), { objectMode: false });
      req.headersTimeoutMs = 0;
      if (options.signal) req.signal = options.signal;
    }
    const res = await this.session.requestText(req);
    if (res.status !== 200 && res.status !== 201) {
      throw errorForStatus(this.ctx(req), res.status, res.text, headerValue(res.headers, 'content-type'));
    }
    const duplicates = parseDuplicates(res.text);
    if (duplicates) {
      throw new XnatError(
        'duplicate',
        `XNAT kept its existing copy of '${path}' in resource '${resource}' at ${describeOwner(owner)} (duplicates: ${duplicates.join(', ')}): upload with overwrite to replace it`,
        res.status,
      );
    }
  }

  /**
   * Newer XNAT deletes every entry whose path *starts with* the given one (CatalogUtils
   * .findCatEntriesWithinPath), so "a" would take "ab.txt" and "a/…" with it. The resource is
   * listed first: a folder is deleted as "path/", and a file with prefix siblings is refused
   * rather than risk deleting them.
   */
  async deleteFile(owner: Owner, resource: string, path: string, knownPaths?: readonly string[]): Promise<void> {
    let target = path;
    if (!path.endsWith('/')) {
      const paths = knownPaths ?? (await this.listFiles(owner, resource)).map((f) => f.path);
      const exact = paths.includes(path);
      const inside = paths.some((p) => p.startsWith(`${path}/`));
      if (!exact && inside) target = `${path}/`;
      else if (exact) {
        const others = paths.filter((p) => p !== path && p.startsWith(path));
        if (others.length > 0) {
          throw new XnatError(
            'conflict',
            // No resource here: callers put the path the user knows (the resource's label) in front.
            `not deleted: XNAT deletes by prefix and would also remove ${others.slice(0, 3).join(', ')}${others.length > 3 ? ' …' : ''}; delete it in the XNAT web UI`,
          );
        }
      }
    }
    const encoded = encodeFilePathForWrite(target) ?? encodeFilePath(target);
    await this.delete({ method: 'DELETE', path: filesPath(owner, resource, target, encoded) });
  }

  async deleteResource(owner: Owner, resource: string): Promise<void> {
    await this.delete({ method: 'DELETE', path: resourcePath(owner, resource) });
  }

  async close(): Promise<void> {
    try {
      await this.session.logout();
    } finally {
      await this.http.close();
    }
  }

  private async delete(req: HttpRequest): Promise<void> {
    const res = await this.session.requestText(req);
    if (res.status === 200 || res.status === 204) return;
    // A retried DELETE whose first try went through finds nothing left: that is success.
    if (res.status === 404 && res.attempts > 1) return;
    throw errorForStatus(this.ctx(req), res.status, res.text, headerValue(res.headers, 'content-type'));
  }

  /** GET a listing and map its rows; large ones are parsed in slices, off the FUSE callbacks' way. */
  private async list<T>(path: string, query: string, map: (row: Row) => T): Promise<T[]> {
    const req: HttpRequest = { method: 'GET', path: `${path}?${query}`, headers: { accept: 'application/json' } };
    const res = await this.session.requestText(req);
    if (res.status !== 200) {
      throw errorForStatus(this.ctx(req), res.status, res.text, headerValue(res.headers, 'content-type'), headerValue(res.headers, 'location'));
    }
    return parseRows(res.text, { baseUrl: this.baseUrl, what: `GET ${path}` }, map);
  }

  private async failure(req: HttpRequest, status: number, headers: Record<string, string | string[] | undefined>, body: Readable): Promise<XnatError> {
    let text = '';
    try {
      text = await readText(body, 64 * 1024);
    } catch {
      body.destroy();
    }
    return errorForStatus(this.ctx(req), status, text, headerValue(headers, 'content-type'), headerValue(headers, 'location'));
  }

  private ctx(req: HttpRequest) {
    return { baseUrl: this.baseUrl, method: req.method, path: stripQuery(req.path) };
  }

  /**
   * Hand out a body whose failures are XnatError('network') with a useful message, and whose
   * destruction by the reader frees the connection.
   */
  private guardBody(body: Readable, req: HttpRequest): Readable {
    const out = new PassThrough();
    body.on('error', (err) => {
      if (out.destroyed) return;
      if ((err as Error).name === 'AbortError' || req.signal?.aborted) out.destroy(err);
      else if ((err as NodeJS.ErrnoException).code === 'UND_ERR_BODY_TIMEOUT') {
        const s = Math.round(this.http.timeouts.bodyMs / 1000);
        out.destroy(
          new XnatError(
            'network',
            `XNAT at ${this.baseUrl} stopped sending ${stripQuery(req.path)} (nothing for ${s} s, UND_ERR_BODY_TIMEOUT): it is overloaded or not responding; try again later`,
            null,
            { cause: err, timedOut: true },
          ),
        );
      } else {
        out.destroy(
          new XnatError(
            'network',
            `the download of ${stripQuery(req.path)} from XNAT at ${this.baseUrl} broke off (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); retry or resume`,
            null,
            { cause: err },
          ),
        );
      }
    });
    out.on('close', () => {
      if (!body.destroyed && !body.readableEnded) body.destroy();
    });
    body.pipe(out);
    return out;
  }
}

async function* multipart(pre: Buffer, content: AsyncIterable<Buffer>, post: Buffer): AsyncGenerator<Buffer> {
  yield pre;
  yield* content;
  yield post;
}

async function* fileBytes(sourcePath: string, size: number): AsyncGenerator<Buffer> {
  if (size === 0) return;
  // Bounded to `size` so Content-Length stays right even if the file grows meanwhile.
  yield* createReadStream(sourcePath, { start: 0, end: size - 1, highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>;
}

/** The "duplicates" list of XNAT's 200 upload answer, or null when the upload was stored. */
export function parseDuplicates(text: string): string[] | null {
  const t = text.trim();
  if (!t.startsWith('{') || !t.includes('duplicates')) return null;
  try {
    const doc = JSON.parse(t) as { duplicates?: unknown };
    if (Array.isArray(doc.duplicates) && doc.duplicates.length > 0) return doc.duplicates.map(String);
  } catch {
    // not JSON: not a duplicates answer
  }
  return null;
}

export function parseContentRange(v: string | undefined): { start: number; end: number; total: number | null } | null {
  if (!v) return null;
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v);
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
}

function toInt(v: string | undefined): number | null {
  if (v === undefined || v.trim() === '') return null;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

function stripQuery(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

function describeOwner(o: Owner): string {
  switch (o.level) {
    case 'project':
      return `project ${o.project}`;
    case 'subject':
      return `subject ${o.subject} of project ${o.project}`;
    case 'experiment':
      return `experiment ${o.experiment}`;
    case 'scan':
      return `scan ${o.scan} of experiment ${o.experiment}`;
    case 'assessor':
      return `assessor ${o.assessor} of experiment ${o.experiment}`;
  }
}

/**
 * How long XNAT may take to answer an upload once its body is sent (undici's headers timeout
 * starts then): it stores the file, hashes it and updates the catalog first, which for a file of
 * several GB takes longer than the usual 60 s. Timing out there made close() fail with EIO for a
 * file XNAT then held, and uploaded it again. At least the usual timeout; 1 s more per 20 MB.
 */
export function uploadAnswerTimeoutMs(size: number, usualMs: number): number {
  return usualMs <= 0 ? usualMs : Math.max(usualMs, Math.ceil(size / 20e6) * 1000);
}
