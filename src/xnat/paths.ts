// REST paths for XNAT objects, and the reverse: relative file paths and scan ids out of listed URIs.
//
// Routes used (xnat-web R/XNATApplication.java, all also under /data/archive):
//   /data/projects/{P}/subjects, /data/projects/{P}/experiments, /data/projects/{P}/subjects/{S}/experiments
//   /data/experiments/{E}/scans, /data/experiments/{E}/assessors
//   /data/projects/{P}/resources/{R}/files                     (project)
//   /data/projects/{P}/subjects/{S}/resources/{R}/files        (subject; label or accession id)
//   /data/experiments/{E}/resources/{R}/files                  (experiment, accession id only)
//   /data/experiments/{E}/scans/{SCAN}/resources/{R}/files     (scan)
//   /data/experiments/{E}/assessors/{A}/resources/{R}/files    (assessor; default type "out")
//   /data/experiments/{E}/scans/ALL/files                      (every scan resource of E)
//
// File-path encoding. What real XNAT does with the part after ".../files/":
//  * FileList takes it from Restlet's Reference.getRemainingPart(), i.e. still percent-encoded as
//    sent (Tomcat's getRequestURI is raw), strips "?query" and a leading "/".
//  * xnat-web 1.7–1.8.x: CatalogUtils.getEntryByURI(catalog, path) compares each catalog entry URI
//    (the real relative path) first with the raw string, then with java.net.URLDecoder.decode(path)
//    — a *form* decoder: "%XX" → bytes (JVM default charset) and "+" → space.
//  * Newer builds (XNAT monorepo FileList): if the raw path contains "%2B" or "%20" it is decoded
//    once with URLDecoder *before* that lookup (which again tries raw, then decoded).
// So a name must come back exactly after at most one form-decode, whichever version runs. Encoding
// every segment with encodeURIComponent plus !'()* (so "+" is always "%2B", never a literal that
// URLDecoder would turn into a space; "%" is "%25"; "#", "?" and ";" are escaped so neither the
// client nor Tomcat cuts the URL there; non-ASCII goes as UTF-8 bytes) gives exactly one decode in
// both versions: either FileList decodes and the raw lookup matches, or the lookup's own decode does.
// Caveats: non-ASCII needs the server JVM's default charset to be UTF-8 (URLDecoder.decode(String)
// uses it); "/" inside a name cannot be sent (Tomcat rejects %2F); a folder named like "x.zip"
// makes XNAT treat "x.zip/inner" as a zip entry (FileList zip-extension check) — XNAT limitations.
// Literal "!" is escaped too so "a.zip!b" names are not taken for zip-entry syntax on 1.7/1.8.
// Uploads and deletes get no second decode, so they use encodeFilePathForWrite (below).
import type { Owner } from './types.js';

/** Strict RFC 3986 encoding of one path segment. */
export function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Encode a '/'-separated relative file path segment by segment. A trailing '/' is kept (XNAT
 * treats "dir/" as a folder for listing and deletion); empty, "." and ".." segments are refused.
 */
export function encodeFilePath(path: string): string {
  const trailing = path.endsWith('/');
  const body = trailing ? path.slice(0, -1) : path;
  const segments = body.split('/');
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') {
      throw new RangeError(`invalid file path ${JSON.stringify(path)}: empty, "." or ".." segment`);
    }
  }
  return segments.map(encodeSegment).join('/') + (trailing ? '/' : '');
}

/**
 * A scan segment: XNAT splits it on "," (scan lists) and maps "[COMMA]"/"[SLASH]" back
 * (XNATTemplate), so those characters in a scan id use XNAT's own escapes.
 */
export function encodeScanSegment(scan: string): string {
  return encodeSegment(scan.replace(/,/g, '[COMMA]').replace(/\//g, '[SLASH]'));
}

/** Characters a URL path may carry unescaped (RFC 3986 pchar, minus ';' which Tomcat cuts at). */
const RAW_PATH_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,=:@]$/;

/**
 * Encoding for uploads and deletes, where newer XNAT has no second decode: the URL path after
 * /files/ is used as sent, decoded once only if it contains "%20" or "%2B". So:
 *  - a name made only of characters a URL path may carry raw is sent raw (no decode needed);
 *  - a name needing escapes is fully encoded, which works only when it has a space or '+'
 *    (their %20/%2B trigger the decode); otherwise null: XNAT would store the escaped text.
 * Older XNAT (1.7–1.8.x) never decodes upload paths: there only raw-safe names round-trip.
 */
export function encodeFilePathForWrite(path: string): string | null {
  let needsEscape = false;
  for (const ch of path) {
    if (ch !== '/' && !RAW_PATH_CHAR.test(ch)) {
      needsEscape = true;
      break;
    }
  }
  if (!needsEscape) {
    encodeFilePath(path); // validates segments
    return path;
  }
  return path.includes(' ') || path.includes('+') ? encodeFilePath(path) : null;
}

/**
 * Why XNAT cannot store a file at this relative path through its REST API, or null when it can.
 * uploadFile sends a path that needs escapes and has neither a space nor a '+' as the bare name
 * in the multipart filename, which XNAT uses only for a file at the top of the resource (and
 * only for a name a header can carry); anywhere else such a name would be stored escaped.
 */
export function unstorablePath(path: string): string | null {
  const segments = path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) {
    return `XNAT cannot store a file at '${path}': a file name cannot be empty, '.' or '..', nor hold '/'`;
  }
  if (encodeFilePathForWrite(path) === null && (path.includes('/') || /["\\\x00-\x1f\x7f]/.test(path))) {
    return `XNAT cannot store a file named '${path}' through its REST API: it decodes upload paths only when they contain a space or '+', so the other escaped characters would end up in the name; rename it`;
  }
  return null;
}

const e = encodeSegment;

/** The REST path of the object that owns resources (no trailing slash). */
export function ownerPath(owner: Owner): string {
  switch (owner.level) {
    case 'project':
      return `/data/projects/${e(owner.project)}`;
    case 'subject':
      return `/data/projects/${e(owner.project)}/subjects/${e(owner.subject)}`;
    case 'experiment':
      return `/data/experiments/${e(owner.experiment)}`;
    case 'scan':
      return `/data/experiments/${e(owner.experiment)}/scans/${encodeScanSegment(owner.scan)}`;
    case 'assessor':
      return `/data/experiments/${e(owner.experiment)}/assessors/${e(owner.assessor)}`;
  }
}

export function resourcesPath(owner: Owner): string {
  return `${ownerPath(owner)}/resources`;
}

/** …/resources/{R}; R is a label or numeric id. */
export function resourcePath(owner: Owner, resource: string): string {
  return `${resourcesPath(owner)}/${e(resource)}`;
}

/**
 * …/resources/{R}/files, or …/files/{path} when a path is given (encoded for reads unless
 * `encodedPath` is passed, e.g. from encodeFilePathForWrite).
 */
export function filesPath(owner: Owner, resource: string, path?: string, encodedPath?: string): string {
  const base = `${resourcePath(owner, resource)}/files`;
  if (encodedPath !== undefined) return `${base}/${encodedPath}`;
  return path === undefined || path === '' ? base : `${base}/${encodeFilePath(path)}`;
}

export const listPaths = {
  projects: () => '/data/projects',
  subjects: (project: string) => `/data/projects/${e(project)}/subjects`,
  experiments: (project: string, subject?: string) =>
    subject === undefined
      ? `/data/projects/${e(project)}/experiments`
      : `/data/projects/${e(project)}/subjects/${e(subject)}/experiments`,
  scans: (experiment: string) => `/data/experiments/${e(experiment)}/scans`,
  assessors: (experiment: string) => `/data/experiments/${e(experiment)}/assessors`,
  allScanFiles: (experiment: string) => `/data/experiments/${e(experiment)}/scans/ALL/files`,
  allResources: (experiment: string) => `/data/experiments/${e(experiment)}/resources`,
};

/** Where "/resources/<seg>/files/" starts in a listed URI, or null. Linear scan, no regex. */
function locateFiles(uri: string): { resStart: number; filesEnd: number } | null {
  const RES = '/resources/';
  const FILES = '/files/';
  let from = 0;
  for (;;) {
    const r = uri.indexOf(RES, from);
    if (r < 0) return null;
    const segStart = r + RES.length;
    const slash = uri.indexOf('/', segStart);
    if (slash < 0) return null;
    // The segment after /resources/ is the resource id or label; then "/files/" must follow.
    if (slash > segStart && uri.startsWith(FILES, slash)) {
      return { resStart: r, filesEnd: slash + FILES.length };
    }
    from = r + 1;
  }
}

/**
 * The path relative to the resource's files/ folder, as pyxnat/xnatpy derive it: the text after
 * the first "/resources/<id-or-label>/files/". Listed URIs are not encoded, so nothing is decoded.
 * Works for URIs with or without the leading /data (multi-resource listings omit it).
 */
export function relativePathFromUri(uri: string): string | null {
  const at = locateFiles(uri);
  return at ? uri.slice(at.filesEnd) : null;
}

/** The scan id in ".../scans/<id>/resources/<r>/files/...", or null. */
export function scanIdFromUri(uri: string): string | null {
  const at = locateFiles(uri);
  if (!at) return null;
  const prefix = uri.slice(0, at.resStart);
  const i = prefix.lastIndexOf('/scans/');
  if (i < 0) return null;
  const id = prefix.slice(i + '/scans/'.length);
  return id.length > 0 && !id.includes('/') ? id : null;
}

/**
 * Turn a URI as listed by XNAT (unencoded, server-absolute, maybe without /data) into a request
 * path relative to the base URL (which already carries any context path such as /xnat).
 */
export function requestPathFromUri(uri: string, contextPath: string): string {
  let u = uri;
  // Tolerate a URI that already includes the context path.
  if (contextPath && (u.startsWith(`${contextPath}/data/`) || u.startsWith(`${contextPath}/REST/`))) {
    u = u.slice(contextPath.length);
  }
  if (!u.startsWith('/')) u = `/${u}`;
  if (!u.startsWith('/data/') && !u.startsWith('/REST/')) u = `/data${u}`;
  const at = locateFiles(u);
  if (!at) return u.split('/').map((s, i) => (i === 0 ? s : encodeSegment(s))).join('/');
  // Prefix segments are ids (safe) but encode them anyway; the file part gets the careful encoding.
  const prefix = u
    .slice(0, at.filesEnd - 1)
    .split('/')
    .map((s, i) => (i === 0 ? s : encodeSegment(s)))
    .join('/');
  const rel = u.slice(at.filesEnd);
  return rel === '' ? prefix : `${prefix}/${encodeFilePath(rel)}`;
}
