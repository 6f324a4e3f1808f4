// …/resources/{R}[/files[/path]] and …/files: listings, single-file GET/HEAD, zip downloads,
// uploads, deletes, resource create/delete.
//
// How the real server reads the path after /files/ (read in NrgXnat/xnat HEAD 93d33cb,
// web/…/restlet/resources/files/FileList.java:151-155 and utils/CatalogUtils.java):
//  1. filePath = the *raw, still percent-encoded* remaining part of the URL (leading '/' and any
//     '?query' cut off).
//  2. Only if that raw string contains "%2B" or "%20" (case-sensitive) is the whole path decoded
//     with java.net.URLDecoder (which also turns '+' into a space).
//  3. GET of one file: CatalogUtils.getEntryByURIOrId matches a catalogue entry whose relative path
//     equals filePath, else equals URLDecoder.decode(filePath) (a second decode), else an entry ID.
//  4. Folder listings (path ending in '/') match entries with relPath.startsWith(filePath), and
//     recursive=false keeps only entries for which relPath.substring(dir.length()+1) contains '/'
//     (sic: that is *deeper* entries, not direct children; [RT]'s count check cannot tell).
//  5. DELETE uses CatalogUtils.findCatEntriesWithinPath(filePath): key.equals(path) ||
//     key.startsWith(path) || (path ends in '*' and key matches it as a regex) — no second decode,
//     and a plain prefix match, so deleting "a" also deletes "ab.txt".
//  6. Uploads store to filePath as is (after step 2); without a URL path the multipart file name.
// Consequences the emulator reproduces: names needing escapes other than %20/%2B (#, %, non-ASCII)
// GET fine (step 3) but are stored literally-encoded on upload to such a URL path, cannot be
// DELETEd or folder-listed by that path (404 "No matched files" / empty list); a '+' sent raw next
// to a %20 turns into a space. Tomcat itself rejects %2F and %5C in paths with 400.
import { stat } from 'node:fs/promises';
import { close, createReadStream, open, read } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Ctx } from './context.js';
import { contentTypeFor, HttpError, javaUrlDecode } from './http.js';
import { resourceRow, sendTable } from './listings.js';
import { boundaryOf, MultipartError, parseMultipart } from './multipart.js';
import { applyTableParams, renderTable, xmlEscape, type Row, type Table } from './resultset.js';
import type { Scope, Target } from './resolve.js';
import { selectResources } from './resolve.js';
import { projectOf, type OwnerNode, type ResourceInfo, type ResourceNode, type TempFile } from './store.js';
import { readZipEntries, writeZip, type ZipSource } from './zip.js';

type FilesTarget = Extract<Target, { kind: 'files' }>;
type ResourceTarget = Extract<Target, { kind: 'resource' }>;

const FILE_COLUMNS = ['Name', 'Size', 'URI', 'collection', 'file_tags', 'file_format', 'file_content', 'cat_ID', 'digest'];

// ------------------------------------------------------------------ URIs and zip paths

/** XNATCatalogTemplate.getBaseURI: the prefix of file URIs for a one-resource listing. */
function baseUri(scope: Scope, owner: OwnerNode): string {
  let b = '/data';
  if (scope.project && scope.subject && scope.projectAndSubject) b += `/projects/${scope.project.id}/subjects/${scope.subject.id}`;
  switch (owner.kind) {
    case 'scan':
      return `${b}/experiments/${owner.experiment.id}/scans/${(scope.scans ?? [owner]).map((s) => s.id).join(',')}`;
    case 'assessor':
      return `${b}/experiments/${owner.experiment.id}/assessors/${owner.id}${scope.assessorType ? '/' + scope.assessorType : ''}`;
    case 'experiment':
      return `${b}/experiments/${owner.id}`;
    case 'subject':
      return scope.projectAndSubject ? b : `${b}/projects/${owner.project.id}/subjects/${owner.id}`;
    case 'project':
      return `${b}/projects/${owner.id}`;
  }
}

/** The SQL `resource_path` XNAT uses in multi-resource listings (no /data prefix). */
function resourcePath(scope: Scope, r: ResourceNode): string {
  const o = r.owner;
  switch (o.kind) {
    case 'scan':
      return `/experiments/${o.experiment.id}/scans/${o.id}/resources/${r.id}`;
    case 'assessor':
      return `/experiments/${o.experiment.id}/assessors/${o.id}/${scope.assessorType ?? 'out'}/resources/${r.id}`;
    case 'experiment':
      return `/experiments/${o.id}/resources/${r.id}`;
    default:
      return `${baseUri(scope, o)}/resources/${r.id}`;
  }
}

/** Zip entry prefix, as RestFileUtils.buildRelativePath lays it out (§2.5). */
function zipPrefix(scope: Scope, r: ResourceNode): string {
  const o = r.owner;
  const res = `resources/${r.label}/files`;
  switch (o.kind) {
    case 'scan': {
      // scans named in the request become "{id}-{type}"
      const named = scope.scans?.includes(o);
      return `${o.experiment.label}/scans/${named && o.type ? `${o.id}-${o.type.replace(/\W/g, '_')}` : o.id}/${res}`;
    }
    case 'assessor':
      return scope.assessor === o ? `${o.label}/${scope.assessorType ?? 'out'}/${res}` : `${o.experiment.label}/assessors/${o.label}/out/${res}`;
    case 'experiment':
      return `${o.label}/${res}`;
    case 'subject':
      return `${o.label}/${res}`;
    case 'project':
      return `${o.id}/${res}`;
  }
}

function downloadName(scope: Scope): string {
  if (scope.assessor) return scope.assessor.label;
  if (scope.experiment) return scope.experiment.label;
  if (scope.subject) return scope.subject.label;
  return scope.project?.id ?? 'download';
}

// ------------------------------------------------------------------ path quirk

function checkTomcatPath(raw: string): void {
  if (/%2f|%5c|%00/i.test(raw)) throw new HttpError(400, 'Bad Request');
}

/** Step 2 above. */
export function xnatFilePath(raw: string): string {
  const p = raw.startsWith('/') ? raw.slice(1) : raw;
  if (p.includes('%2B') || p.includes('%20')) {
    try {
      return javaUrlDecode(p);
    } catch {
      throw new HttpError(500, 'Error during service initialization');
    }
  }
  return p;
}

/** Step 3: exact, then decoded. */
function findEntry(r: ResourceNode, filePath: string): string | null {
  if (r.files.has(filePath)) return filePath;
  let decoded: string;
  try {
    decoded = javaUrlDecode(filePath);
  } catch (e) {
    throw new HttpError(500, (e as Error).message);
  }
  return r.files.has(decoded) ? decoded : null;
}

function folderMatches(ctx: Ctx, dir: string, rel: string): boolean {
  if (!rel.startsWith(dir)) return false;
  const recursive = (ctx.query.get('recursive') ?? '').toLowerCase() !== 'false';
  return recursive || rel.substring(dir.length + 1).includes('/');
}

// ------------------------------------------------------------------ listings

function entryFilter(ctx: Ctx, r: ResourceNode, rel: string): boolean {
  const formats = ctx.query.getAll('file_format');
  const contents = ctx.query.getAll('file_content');
  const m = r.files.get(rel)!;
  const fmt = m.format ?? r.format;
  const cnt = m.content ?? r.content;
  if (formats.length && !formats.includes(fmt || 'NULL')) return false;
  if (contents.length && !contents.includes(cnt || 'NULL')) return false;
  return true;
}

function fileRow(ctx: Ctx, r: ResourceNode, rel: string, prefix: string): Row {
  const m = r.files.get(rel)!;
  const locator = (ctx.query.get('locator') ?? '').toLowerCase();
  const row: Row = {
    Name: rel.slice(rel.lastIndexOf('/') + 1),
    Size: String(m.size),
    collection: r.label,
    file_tags: (m.tags ?? []).join(','),
    file_format: m.format ?? r.format,
    file_content: m.content ?? r.content,
    cat_ID: String(r.id),
    digest: m.digest,
  };
  const abs = ctx.state.store.filePath(r, rel) ?? '';
  if (locator === 'absolutepath') row.absolutePath = abs;
  else if (locator === 'projectpath') row.projectPath = path.relative(path.join(ctx.state.store.root, 'projects'), abs).split(path.sep).join('/');
  else row.URI = `${prefix}/files/${rel}`;
  return row;
}

async function sendFileTable(ctx: Ctx, rows: Row[]): Promise<void> {
  const locator = (ctx.query.get('locator') ?? '').toLowerCase();
  const columns = FILE_COLUMNS.map((c) => (c === 'URI' && locator === 'absolutepath' ? 'absolutePath' : c === 'URI' && locator === 'projectpath' ? 'projectPath' : c));
  const t: Table = { columns, rows, meta: [['title', 'Files']], columnsBlock: [{ key: 'URI', serverRoot: '' }] };
  await sendTable(ctx, applyTableParams(t, ctx.query, { allowColumns: false }));
}

/** All catalogues a files URL addresses (selector, or the owners' own; ?all adds children). */
function resourcesFor(ctx: Ctx, t: FilesTarget): ResourceNode[] {
  if (t.selector !== null) return selectResources(t.owners, t.selector);
  const owners: OwnerNode[] = [...t.owners];
  if (ctx.flag('all')) for (const o of t.owners) if (o.kind === 'experiment') owners.push(...o.scans.values(), ...o.assessors.values());
  return owners.flatMap((o) => [...o.resources.values()]);
}

// ------------------------------------------------------------------ GET / HEAD

export async function getFiles(ctx: Ctx, t: FilesTarget): Promise<void> {
  checkTomcatPath(t.remainder);
  const filePath = xnatFilePath(t.remainder);
  const format = (ctx.query.get('format') ?? '').toLowerCase();
  const resources = resourcesFor(ctx, t);
  if (t.selector !== null && !resources.length) throw new HttpError(404, 'Unable to find file.', 'empty');
  const zip = format === 'zip';
  if (format === 'tar' || format === 'tar.gz') throw new HttpError(400, `The emulator does not produce ${format} downloads`);
  const single = t.selector !== null && resources.length === 1 && !zip;

  if (!filePath) {
    if (zip) return sendZip(ctx, t.scope, resources, null);
    const rows: Row[] = [];
    for (const r of resources) {
      const prefix = single ? `${baseUri(t.scope, r.owner)}/resources/${r.id}` : resourcePath(t.scope, r);
      for (const rel of r.files.keys()) if (entryFilter(ctx, r, rel)) rows.push(fileRow(ctx, r, rel, prefix));
    }
    return sendFileTable(ctx, rows);
  }

  // one file, or a folder when the path ends in '/'
  for (const r of resources) {
    const rel = findEntry(r, filePath);
    if (rel) {
      if (zip) return sendZip(ctx, t.scope, [r], [rel], true);
      return sendFile(ctx, r, rel);
    }
  }
  if (filePath.endsWith('/')) {
    const hits: Array<[ResourceNode, string]> = [];
    for (const r of resources) for (const rel of r.files.keys()) if (folderMatches(ctx, filePath, rel) && entryFilter(ctx, r, rel)) hits.push([r, rel]);
    if (zip) {
      const byRes = new Map<ResourceNode, string[]>();
      for (const [r, rel] of hits) byRes.set(r, [...(byRes.get(r) ?? []), rel]);
      return sendZipEntries(ctx, t.scope, [...byRes].flatMap(([r, rels]) => rels.map((rel) => ({ r, rel, name: rel }))));
    }
    return sendFileTable(ctx, hits.map(([r, rel]) => fileRow(ctx, r, rel, single ? `${baseUri(t.scope, r.owner)}/resources/${r.id}` : resourcePath(t.scope, r))));
  }
  throw new HttpError(404, 'Unable to find catalog entry for given uri.', 'empty');
}

/** Tomcat writes header values as ISO-8859-1 and turns control chars and chars > 255 into spaces. */
function tomcatHeaderValue(v: string): string {
  return v.replace(/[\u0000-\u0008\u000a-\u001f\u007f]|[^\u0000-\u00ff]/g, ' ');
}

async function sendFile(ctx: Ctx, r: ResourceNode, rel: string): Promise<void> {
  const abs = ctx.state.store.filePath(r, rel);
  const st = abs ? await stat(abs).catch(() => null) : null;
  if (!abs || !st || !st.isFile()) throw new HttpError(404, 'Unable to find file.', 'empty');
  const name = rel.slice(rel.lastIndexOf('/') + 1);
  const headers: Record<string, string> = {
    'Content-Type': contentTypeFor(name),
    'Content-Disposition': `attachment; filename="${tomcatHeaderValue(name)}";`,
    'Cache-Control': 'must-revalidate',
    'Last-Modified': st.mtime.toUTCString(),
  };
  const size = st.size;
  let start = 0;
  let end = size - 1;
  let status = 200;
  const range = ctx.req.headers.range;
  if (ctx.state.options.rangeSupport) {
    headers['Accept-Ranges'] = 'bytes';
    const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null;
    if (m && (m[1] || m[2])) {
      if (m[1]) {
        start = Number(m[1]);
        end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      } else {
        start = Math.max(0, size - Number(m[2]));
      }
      if (start >= size || start > end || (!m[1] && Number(m[2]) === 0)) {
        await ctx.send(416, '', null, { 'Content-Range': `bytes */${size}` });
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
  }
  const length = size === 0 ? 0 : end - start + 1;
  headers['Content-Length'] = String(length);
  await ctx.head(status, headers, length > 0);
  if (!ctx.isHead && length > 0) await ctx.stream(createReadStream(abs, { start, end, highWaterMark: 64 * 1024 }), length);
  ctx.end();
}

async function sendZip(ctx: Ctx, scope: Scope, resources: ResourceNode[], only: string[] | null, bare = false): Promise<void> {
  const entries: Array<{ r: ResourceNode; rel: string; name: string }> = [];
  for (const r of resources) {
    for (const rel of only ?? [...r.files.keys()]) {
      if (!only && !entryFilter(ctx, r, rel)) continue;
      entries.push({ r, rel, name: bare ? rel.slice(rel.lastIndexOf('/') + 1) : `${zipPrefix(scope, r)}/${rel}` });
    }
  }
  return sendZipEntries(ctx, scope, entries);
}

async function sendZipEntries(ctx: Ctx, scope: Scope, entries: Array<{ r: ResourceNode; rel: string; name: string }>): Promise<void> {
  const sources: ZipSource[] = [];
  // Files missing on disk are left out, as XNAT does; stat a few at a time.
  for (let i = 0; i < entries.length; i += 8) {
    const batch = entries.slice(i, i + 8).map(async (e) => {
      const abs = ctx.state.store.filePath(e.r, e.rel);
      const st = abs ? await stat(abs).catch(() => null) : null;
      // A read buffer sized to the file: the default 64 KiB per small file is mostly garbage.
      const highWaterMark = Math.min(64 * 1024, (st?.size ?? 0) + 1);
      if (!abs || !st?.isFile()) return null;
      const size = st.size;
      return { name: e.name, size, mtime: st.mtime, open: () => createReadStream(abs, { highWaterMark }), readWhole: () => readSmallFile(abs, size) };
    });
    for (const s of await Promise.all(batch)) if (s) sources.push(s);
  }
  if (!sources.length) throw new HttpError(404, 'Not Found');
  const c = ctx.query.get('compression');
  const level = c !== null && /^\d$/.test(c) ? Number(c) : 6;
  await ctx.head(200, { 'Content-Type': 'application/zip', 'Content-Disposition': `attachment; filename="${tomcatHeaderValue(downloadName(scope))}.zip";` }, true);
  if (!ctx.isHead) await writeZip((b) => ctx.body(b), sources, level);
  ctx.end();
}

/**
 * open, one read of the stat'ed size, close: three thread-pool trips and no stream machinery.
 * A read stream costs about 0.1 ms of CPU per small file, where a Java server's blocking read
 * costs microseconds; on the benchmark's shared cores that CPU is taken from the client.
 */
function readSmallFile(abs: string, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    open(abs, 'r', (err, fd) => {
      if (err) return reject(err);
      const buf = Buffer.allocUnsafe(size);
      read(fd, buf, 0, size, 0, (readErr, n) => {
        close(fd, () => (readErr ? reject(readErr) : resolve(n === size ? buf : buf.subarray(0, n))));
      });
    });
  });
}

// ------------------------------------------------------------------ permissions

function requireEdit(ctx: Ctx, owner: OwnerNode): void {
  if (!ctx.state.auth.canEdit(ctx.user!, projectOf(owner).id)) throw new HttpError(403, "User account doesn't have permission to modify this session.");
}

function resourceInfo(ctx: Ctx): ResourceInfo {
  const tags = ctx.query.getAll('tags').flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
  const info: ResourceInfo = { tags };
  for (const k of ['format', 'content', 'description'] as const) {
    const v = ctx.query.get(k);
    if (v) info[k] = v;
  }
  return info;
}

// ------------------------------------------------------------------ uploads

const UPLOAD_TYPES = /^(application\/(?!x-www-form-urlencoded)|text\/|image\/|audio\/|video\/)/i;

function formatSize(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) (v /= 1024), i++;
  return `${v.toFixed(1)} ${units[i]}`;
}

export async function putFiles(ctx: Ctx, t: FilesTarget): Promise<void> {
  checkTomcatPath(t.remainder);
  const owner = t.owners[0];
  if (!owner) throw new HttpError(404, 'Unable to identify the parent object');
  requireEdit(ctx, owner);
  if (t.selector === null) throw new HttpError(400, 'Uploads need a resource: use …/resources/{label}/files');
  const store = ctx.state.store;
  const filePath = xnatFilePath(t.remainder);
  const contentType = ctx.req.headers['content-type'] ?? '';
  const multipart = /^multipart\/form-data/i.test(contentType);
  const inbody = ctx.flag('inbody');
  const overwrite = ctx.flag('overwrite');
  const method = ctx.method;
  if (multipart && inbody) throw new HttpError(406, 'Multipart uploads cannot be combined with inbody=true');

  // Receive everything to temp files first (XNAT does the same), then place them.
  const uploads: Array<{ name: string; temp: TempFile }> = [];
  let bodyBytes = 0;
  const body = new Transform({
    transform(c: Buffer, _enc, cb) {
      bodyBytes += c.length;
      cb(null, c);
    },
  });
  // pipeline (not pipe) so a client that goes away errors the parser instead of hanging it
  pipeline(ctx.req, body).catch(() => undefined);
  // Parts being written to temp files; a body cut short leaves some unsettled.
  const pending: Array<Promise<void>> = [];
  try {
    if (multipart) {
      const boundary = boundaryOf(contentType);
      if (!boundary) throw new HttpError(400, 'Missing multipart boundary');
      await parseMultipart(body, boundary, async (part) => {
        if (part.filename === null) return null; // a plain form field
        const sink = store.tempSink();
        const base = part.filename.replace(/\\/g, '/');
        const name = base.slice(base.lastIndexOf('/') + 1);
        pending.push(sink.done.then((temp) => void uploads.push({ name, temp })));
        return sink.sink;
      });
      await Promise.all(pending);
    } else if (inbody || UPLOAD_TYPES.test(contentType)) {
      const sink = store.tempSink();
      pipeline(body, sink.sink).catch((e: Error) => sink.sink.destroy(e));
      const temp = await sink.done;
      if (temp.size > 0) uploads.push({ name: filePath.slice(filePath.lastIndexOf('/') + 1) || 'upload', temp });
      else await store.discardTemp(temp);
    } else {
      for await (const _c of body as AsyncIterable<Buffer>) void _c;
    }
  } catch (e) {
    await Promise.allSettled(pending);
    for (const u of uploads) await store.discardTemp(u.temp);
    if (e instanceof MultipartError) throw new HttpError(400, e.message);
    throw e;
  }
  if (!uploads.length) {
    throw new HttpError(
      400,
      bodyBytes === 0
        ? `You tried to ${method} to this service, but didn't provide any data (found request entity size of 0). Please check the format of your service request.`
        : `You tried to ${method} a payload of ${formatSize(bodyBytes)} to this service, but didn't provide any data. If you think you sent data to upload, you can try to ${method} with the query-string parameter inbody=true or use multipart/form-data encoding.`,
    );
  }

  const info = resourceInfo(ctx);
  let res = selectResources([owner], t.selector)[0];
  if (!res) res = await store.createResource(owner, t.selector, info); // auto-create (§2.8)

  const duplicates: string[] = [];
  for (const u of uploads) {
    const ext = /\.([^.]+)$/.exec(u.name)?.[1]?.toLowerCase() ?? '';
    if (ctx.flag('extract') && ext === 'zip') {
      await extractZip(ctx, res, u.temp, overwrite, info, duplicates);
      continue;
    }
    const dest = filePath || u.name;
    if (!store.filePath(res, dest)) {
      await store.discardTemp(u.temp);
      throw new HttpError(400, `Invalid file path ${dest}`);
    }
    const stored = await store.commitFile(res, dest, u.temp, { overwrite, entry: info });
    if (!stored) duplicates.push(dest);
  }
  if (duplicates.length && !overwrite) await ctx.send(200, JSON.stringify({ duplicates }), 'text/html');
  else await ctx.send(200, '', 'text/plain');
}

async function extractZip(ctx: Ctx, res: ResourceNode, temp: TempFile, overwrite: boolean, info: ResourceInfo, duplicates: string[]): Promise<void> {
  const store = ctx.state.store;
  try {
    let entries;
    try {
      entries = await readZipEntries(temp.path);
    } catch (e) {
      throw new HttpError(415, (e as Error).message);
    }
    for (const e of entries) {
      if (e.isDirectory) continue;
      const rel = e.name.replace(/\\/g, '/').replace(/^\/+/, '');
      if (!store.filePath(res, rel)) continue;
      if (!overwrite && res.files.has(rel)) {
        duplicates.push(rel);
        continue;
      }
      const sink = store.tempSink();
      pipeline(e.open(), sink.sink).catch((err: Error) => sink.sink.destroy(err));
      const t = await sink.done;
      if (!(await store.commitFile(res, rel, t, { overwrite, entry: info }))) duplicates.push(rel);
    }
  } finally {
    await store.discardTemp(temp);
  }
}

// ------------------------------------------------------------------ deletes

export async function deleteFiles(ctx: Ctx, t: FilesTarget): Promise<void> {
  checkTomcatPath(t.remainder);
  const filePath = xnatFilePath(t.remainder);
  const resources = t.selector !== null ? selectResources(t.owners, t.selector) : [];
  const res = resources[0];
  if (!res) {
    await ctx.send(200, '', null); // FileList.handleDelete does nothing without a resource
    return;
  }
  if (!ctx.state.auth.canEdit(ctx.user!, projectOf(res.owner).id)) throw new HttpError(403, "User account doesn't have permission to modify this session.");
  let regex: RegExp | null = null;
  if (filePath.endsWith('*')) {
    try {
      regex = new RegExp('^(?:' + filePath.replace(/\*$/, '.*') + ')$');
    } catch {
      regex = null;
    }
  }
  const hits = [...res.files.keys()].filter((k) => k === filePath || k.startsWith(filePath) || (regex !== null && regex.test(k)));
  if (!hits.length) throw new HttpError(ctx.flag('accept-not-found') ? 204 : 404, 'No matched files');
  await ctx.state.store.deleteFiles(res, hits);
  await ctx.send(200, '', null);
}

// ------------------------------------------------------------------ resource item

export async function handleResource(ctx: Ctx, t: ResourceTarget): Promise<void> {
  const store = ctx.state.store;
  const matches = selectResources(t.owners, t.selector);
  if (ctx.method === 'GET' || ctx.method === 'HEAD') {
    if (t.extra) throw new HttpError(400, "If you are trying to access a file, please append '/files' to the resource URI.");
    const r = matches[0];
    if (!r) throw new HttpError(404, `Unable to find resource ${t.selector}`);
    if ((ctx.query.get('format') ?? '').toLowerCase() === 'json') {
      const { body, contentType } = renderTable({ columns: Object.keys(resourceRow(store, r)), rows: [resourceRow(store, r)], meta: [['totalRecords', '1']] }, 'json');
      return ctx.send(200, body, contentType);
    }
    return ctx.send(200, catalogXml(r), 'text/xml');
  }
  if (t.extra) throw new HttpError(400, "If you are trying to access a file, please append '/files' to the resource URI.");
  if (ctx.method === 'PUT' || ctx.method === 'POST') {
    if (t.owners.length !== 1) throw new HttpError(400, 'Resources can only be created on one object at a time');
    const owner = t.owners[0]!;
    requireEdit(ctx, owner);
    if (matches.length) throw new HttpError(409, 'Specified resource already exists.');
    await store.createResource(owner, t.selector, resourceInfo(ctx));
    return ctx.send(200, '', null);
  }
  if (ctx.method === 'DELETE') {
    for (const o of t.owners) requireEdit(ctx, o);
    for (const r of matches) await store.deleteResource(r);
    return ctx.send(200, '', null); // unknown label: 200 and nothing happens (CatalogResource)
  }
  throw new HttpError(405, 'Method Not Allowed');
}

function catalogXml(r: ResourceNode): string {
  let s = `<?xml version="1.0" encoding="UTF-8"?>\n<cat:Catalog ID="${xmlEscape(r.label)}" xmlns:cat="http://nrg.wustl.edu/catalog" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n<cat:entries>\n`;
  for (const [rel, m] of r.files) {
    const name = rel.slice(rel.lastIndexOf('/') + 1);
    s += `<cat:entry URI="${xmlEscape(rel)}" ID="${xmlEscape(rel)}" name="${xmlEscape(name)}" digest="${m.digest}" size="${m.size}"${m.format ?? r.format ? ` format="${xmlEscape(m.format ?? r.format)}"` : ''}/>\n`;
  }
  return s + '</cat:entries>\n</cat:Catalog>\n';
}
