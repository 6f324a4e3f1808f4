// Session, login, alias-token and /xapi endpoints (§2.10, §2.12).
import type { Ctx } from './context.js';
import { HttpError } from './http.js';

export const BUILD_INFO = {
  version: '1.8.10',
  buildNumber: '8',
  buildDate: 'Thu Feb 15 17:51:29 UTC 2024',
  sha: '3f8c5d21a4',
  isDirty: 'false',
  commit: '8',
  tag: '1.8.10',
  shaFull: '3f8c5d21a4e6b7c0d9e8f7a6b5c4d3e2f1a0b9c8',
  branch: 'master',
  timestamp: '1708019489000',
};

const PROTECTED_REALM = { 'WWW-Authenticate': 'Basic realm="XNAT Protected Area"' };

export async function jsession(ctx: Ctx): Promise<void> {
  if (!ctx.user || !ctx.session) throw new HttpError(401, 'Unauthorized', 'status-page', PROTECTED_REALM);
  if (ctx.method === 'DELETE') {
    ctx.state.auth.invalidate(ctx.session.id);
    return ctx.send(200, '', null);
  }
  if (ctx.method !== 'GET' && ctx.method !== 'POST' && ctx.method !== 'HEAD') throw new HttpError(405, 'Method Not Allowed');
  let body = ctx.session.id;
  if (ctx.flag('CSRF')) body += `; XNAT_CSRF=${ctx.session.id.slice(0, 8).toLowerCase()}-csrf`;
  await ctx.send(200, body, 'text/plain');
}

export async function userAuth(ctx: Ctx): Promise<void> {
  await ctx.send(200, `User '${ctx.user!.name}' is logged in`, 'text/plain');
}

/** PUT /data/services/auth with a form body (xnatpy's login). */
export async function formLogin(ctx: Ctx): Promise<void> {
  if (ctx.method !== 'PUT' && ctx.method !== 'POST') throw new HttpError(405, 'Method Not Allowed');
  const form = new URLSearchParams(await ctx.smallBody());
  const name = form.get('username') ?? ctx.query.get('username') ?? '';
  const password = form.get('password') ?? ctx.query.get('password') ?? '';
  const user = ctx.state.auth.checkCredentials(name, password);
  if (!user) throw new HttpError(401, 'Authentication failed.');
  const s = ctx.state.auth.createSession(user);
  ctx.user = user;
  ctx.session = s;
  ctx.cookies.push(`JSESSIONID=${s.id}; Path=/; HttpOnly`);
  await ctx.send(200, s.id, 'text/plain');
}

export async function tokens(ctx: Ctx, segs: string[]): Promise<void> {
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') throw new HttpError(405, 'Method Not Allowed');
  const auth = ctx.state.auth;
  const [op, a, b] = segs;
  if (op === 'issue') {
    if (a === 'user' && b && b !== ctx.user!.name) throw new HttpError(403, 'Only site administrators can issue tokens for other users.');
    return ctx.send(200, auth.tokenJson(auth.issueToken(ctx.user!)), 'application/json');
  }
  if (op === 'validate') {
    if (!a || !b) throw new HttpError(401, 'You must specify both token and secret to validate a token.');
    const t = auth.token(a);
    const valid = t && t.valid && t.secret === b && t.expires > Date.now() ? t.user.name : null;
    return ctx.send(200, JSON.stringify({ valid }), 'application/json');
  }
  if (op === 'invalidate') {
    if (!a || !auth.invalidateToken(a)) throw new HttpError(404, `Can't find an alias token with the alias ${a ?? ''}`);
    return ctx.send(200, '{"result": "OK"}', 'application/json');
  }
  throw new HttpError(404, 'Not Found');
}

/** /xapi/…; returns false when the path needs a login that the caller has not checked yet. */
export function xapiIsOpen(rest: string): boolean {
  return /^siteConfig\/(buildInfo(\/[^/]+)?|siteId|siteUrl)\/?$/.test(rest);
}

export async function xapi(ctx: Ctx, rest: string, baseUrl: string): Promise<void> {
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') throw new HttpError(405, 'Method Not Allowed');
  let m: RegExpExecArray | null;
  if (/^siteConfig\/buildInfo\/?$/.test(rest)) return ctx.send(200, JSON.stringify(BUILD_INFO), 'application/json');
  if ((m = /^siteConfig\/buildInfo\/([^/]+)$/.exec(rest))) {
    const v = (BUILD_INFO as Record<string, string>)[m[1]!];
    if (v === undefined) throw new HttpError(404, 'Not Found', 'empty');
    return ctx.send(200, v, 'text/plain');
  }
  if (/^siteConfig\/siteId\/?$/.test(rest)) return ctx.send(200, 'XNAT', 'text/plain');
  if (/^siteConfig\/siteUrl\/?$/.test(rest)) return ctx.send(200, baseUrl, 'text/plain');
  if (/^siteConfig\/uptime\/?$/.test(rest)) {
    const secs = Math.floor((Date.now() - ctx.state.startedAt) / 1000);
    return ctx.send(200, JSON.stringify({ days: Math.floor(secs / 86400), hours: Math.floor(secs / 3600) % 24, minutes: Math.floor(secs / 60) % 60, seconds: secs % 60 }), 'application/json');
  }
  throw new HttpError(404, 'Not Found', 'empty');
}
