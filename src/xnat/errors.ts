// Turning XNAT's error answers into one-line XnatErrors that say what to do.
// XNAT error bodies come in three shapes: Restlet status pages (message in <h3>), Tomcat
// sendError pages (message in "<p><b>Message</b> …</p>", status in <title>/<h1>), and empty or
// text/plain bodies. Bodies are capped by the caller, so the regexes here run on small strings.
import { XnatError, type XnatErrorKind } from './types.js';

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code < 0x110000 ? String.fromCodePoint(code) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

function clean(fragment: string): string {
  return decodeEntities(fragment.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
}

function firstMatch(html: string, re: RegExp): string | null {
  const m = re.exec(html);
  if (!m || m[1] === undefined) return null;
  const text = clean(m[1]);
  return text.length > 0 ? text : null;
}

/** Restlet's generic title and boilerplate paragraphs carry no information. */
const UNINFORMATIVE = /^(status page|you can get technical details|please continue your visit)/i;

/**
 * The human message of an XNAT/Restlet/Tomcat HTML error page, or null when there is none.
 * Order: Tomcat's "Message"/"Description" paragraph, Restlet's <h3>, <h1>, <title>, first <p>.
 */
export function extractHtmlMessage(html: string): string | null {
  const candidates = [
    firstMatch(html, /<p>\s*<b>\s*Message\s*<\/b>([\s\S]*?)<\/p>/i),
    firstMatch(html, /<h3[^>]*>([\s\S]*?)<\/h3>/i),
    firstMatch(html, /<p>\s*<b>\s*Description\s*<\/b>([\s\S]*?)<\/p>/i),
    firstMatch(html, /<h1[^>]*>([\s\S]*?)<\/h1>/i),
    firstMatch(html, /<title[^>]*>([\s\S]*?)<\/title>/i),
    firstMatch(html, /<p[^>]*>([\s\S]*?)<\/p>/i),
  ];
  for (const c of candidates) {
    if (c && !UNINFORMATIVE.test(c)) return truncate(c);
  }
  return null;
}

function truncate(s: string, max = 200): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** The message of any error body: HTML page, JSON, or plain text (first line). */
export function extractBodyMessage(body: string, contentType: string | undefined): string | null {
  const trimmed = body.trim();
  if (trimmed.length === 0) return null;
  if (/html/i.test(contentType ?? '') || /^<(!doctype|html|head|body)/i.test(trimmed)) {
    return extractHtmlMessage(trimmed);
  }
  const line = trimmed.split(/\r?\n/, 1)[0] ?? '';
  return line.length > 0 ? truncate(clean(line)) : null;
}

export function kindForStatus(status: number): XnatErrorKind {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not-found';
  if (status === 409) return 'conflict';
  if (status >= 500) return 'server';
  if (status >= 400) return 'bad-request';
  return 'protocol';
}

const ADVICE: Record<XnatErrorKind, string> = {
  unauthorized: 'log in again (check XNAT_USER/XNAT_PASS or ~/.netrc)',
  forbidden: 'your XNAT account lacks permission for this; ask the project owner',
  'not-found': 'it does not exist on the server or is not visible to your account',
  conflict: 'it already exists',
  duplicate: 'the file already exists; upload with overwrite to replace it',
  'bad-request': 'XNAT rejected the request',
  server: 'XNAT failed; try again later or ask its administrator',
  network: 'check the URL, your network and any proxy',
  protocol: 'XNAT answered something unexpected; check the URL (include any context path, e.g. https://host/xnat)',
};

export interface ResponseContext {
  baseUrl: string;
  method: string;
  /** Request path without the query string, as sent (for the message). */
  path: string;
}

/** An XnatError for a non-success HTTP answer. */
export function errorForStatus(
  ctx: ResponseContext,
  status: number,
  body: string,
  contentType: string | undefined,
  location?: string,
): XnatError {
  const what = `${ctx.method} ${ctx.path}`;
  if (status >= 300 && status < 400) {
    return new XnatError(
      'protocol',
      `XNAT at ${ctx.baseUrl} redirected ${what} (${status}) to ${location ?? 'an unknown place'}: use the address it redirects to as the XNAT URL`,
      status,
    );
  }
  const kind = kindForStatus(status);
  const detail = extractBodyMessage(body, contentType);
  const said = detail ? `: ${detail}` : '';
  return new XnatError(kind, `XNAT at ${ctx.baseUrl} answered ${status} to ${what}${said} (${ADVICE[kind]})`, status);
}

export function adviceFor(kind: XnatErrorKind): string {
  return ADVICE[kind];
}
