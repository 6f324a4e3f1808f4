// HTTP plumbing: request log, fault injection, authentication gate and routing.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import createDebug from 'debug';
import { Ctx, DroppedError, type EmulatorState } from './context.js';
import { deleteFiles, getFiles, handleResource, putFiles } from './files.js';
import { HttpError, isBrowser, LOGIN_FAILURE_MESSAGE, restletStatusPage, tomcatErrorPage } from './http.js';
import { itemView, listAssessors, listExperiments, listProjects, listResources, listScans, listSubjects } from './listings.js';
import { resolveArchive } from './resolve.js';
import { formLogin, jsession, tokens, userAuth, xapi, xapiIsOpen } from './services.js';

const log = createDebug('xnatfs:emulator');

export interface Fault {
  match: RegExp;
  method?: string;
  count: number;
  kind: FaultKind;
}
/** 'hang': never answer (a server stopped with SIGSTOP, or all its threads stuck) until the client gives up. */
export type FaultKind = 'status500' | 'drop' | 'hang';
export interface LoggedRequest {
  method: string;
  url: string;
  status: number;
  /** The request body came chunked (no Content-Length): an upload of a file still being written. */
  chunked: boolean;
}

export const LOGIN_PAGE = '/app/template/Login.vm';

export class EmulatorServer {
  readonly http: Server;
  faults: Fault[] = [];
  log: LoggedRequest[] = [];
  baseUrl = '';

  constructor(readonly state: EmulatorState) {
    this.http = createServer((req, res) => void this.handle(req, res));
    this.http.keepAliveTimeout = 30_000;
  }

  private takeFault(method: string, url: string): Fault['kind'] | null {
    for (const f of this.faults) {
      if (f.count > 0 && (!f.method || f.method.toUpperCase() === method) && f.match.test(url)) {
        f.count--;
        // RegExp with /g keeps lastIndex between tests; reset so every request is judged alike
        f.match.lastIndex = 0;
        return f.kind;
      }
      f.match.lastIndex = 0;
    }
    return null;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = req.url ?? '/';
    const entry: LoggedRequest = { method, url, status: 0, chunked: /chunked/i.test(req.headers['transfer-encoding'] ?? '') };
    this.log.push(entry);
    const fault = this.takeFault(method, url);
    if (fault === 'hang') {
      log('%s %s: left unanswered (fault)', method, url);
      req.resume();
      await new Promise<void>((resolve) => res.once('close', resolve));
      return;
    }
    const ctx = new Ctx(req, res, this.state, fault === 'drop');
    const origWriteHead = res.writeHead.bind(res);
    res.writeHead = ((status: number, ...rest: unknown[]) => {
      entry.status = status;
      return (origWriteHead as (...a: unknown[]) => ServerResponse)(status, ...rest);
    }) as typeof res.writeHead;
    try {
      if (fault === 'status500') throw new HttpError(500, 'Internal Server Error (injected fault)');
      await this.route(ctx);
    } catch (e) {
      if (e instanceof DroppedError) {
        log('%s %s: dropped (fault)', method, url);
        return;
      }
      if (res.headersSent) {
        log('%s %s failed mid-response: %s', method, url, (e as Error).message);
        res.destroy();
        return;
      }
      try {
        if (e instanceof HttpError) await ctx.sendError(e);
        else {
          log('%s %s: %O', method, url, e);
          await ctx.send(500, restletStatusPage(500, (e as Error).message || 'Internal Server Error'), 'text/html');
        }
      } catch (e2) {
        if (!(e2 instanceof DroppedError)) res.destroy();
      }
    } finally {
      // never leave an upload half-read on a reused connection
      if (!req.complete) req.resume();
    }
  }

  /** Basic auth (any request), then the JSESSIONID cookie. Returns false when it answered. */
  private async authenticate(ctx: Ctx, open: boolean): Promise<boolean> {
    const { auth } = this.state;
    const cookies = parseCookies(ctx.req.headers.cookie);
    const authz = ctx.req.headers.authorization;
    if (authz && /^basic /i.test(authz)) {
      const decoded = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      const user = i > 0 ? auth.checkCredentials(decoded.slice(0, i), decoded.slice(i + 1)) : null;
      if (!user) {
        await ctx.send(401, tomcatErrorPage(401, LOGIN_FAILURE_MESSAGE, 'The request has not been applied because it lacks valid authentication credentials for the target resource.'), 'text/html;charset=utf-8');
        return false;
      }
      const existing = auth.session(cookies.get('JSESSIONID'));
      if (existing && existing.user === user) ctx.session = existing;
      else {
        ctx.session = auth.createSession(user);
        ctx.cookies.push(`JSESSIONID=${ctx.session.id}; Path=/; HttpOnly`);
      }
      ctx.user = user;
    } else {
      const s = auth.session(cookies.get('JSESSIONID'));
      if (s) {
        ctx.session = s;
        ctx.user = s.user;
      }
    }
    if (ctx.session) ctx.cookies.push(`SESSION_EXPIRATION_TIME="${Date.now()},${auth.idleMs}"; Path=/`);
    if (ctx.user || open) return true;
    const apiPath = /^\/(data|REST|xapi)(\/|$)/.test(ctx.rawPath);
    if (apiPath && !isBrowser(ctx.req.headers['user-agent'])) {
      await ctx.send(
        401,
        tomcatErrorPage(401, 'Full authentication is required to access this resource', 'The request has not been applied because it lacks valid authentication credentials for the target resource.'),
        'text/html;charset=utf-8',
        { 'WWW-Authenticate': 'Basic realm="XNAT"' },
      );
    } else {
      await ctx.send(302, '', null, { Location: `${this.baseUrl}${LOGIN_PAGE}` });
    }
    return false;
  }

  private async route(ctx: Ctx): Promise<void> {
    const p = ctx.rawPath;
    if (p === LOGIN_PAGE) {
      return ctx.send(200, '<html><head><title>XNAT Login</title></head><body><form method="post" action="/login"><input name="username"/><input name="password" type="password"/></form></body></html>', 'text/html');
    }
    let m: RegExpExecArray | null;
    if ((m = /^\/xapi\/(.*)$/.exec(p))) {
      if (!(await this.authenticate(ctx, xapiIsOpen(m[1]!)))) return;
      return xapi(ctx, m[1]!, this.baseUrl);
    }
    m = /^\/(?:data|REST)(?:\/archive)?(\/.*)?$/.exec(p);
    if (!m) {
      if (!(await this.authenticate(ctx, false))) return;
      if (p === '/' || p === '') return ctx.send(200, '<html><head><title>XNAT</title></head><body>xnatfs emulator</body></html>', 'text/html');
      throw new HttpError(404, 'Not Found', 'empty');
    }
    const rest = (m[1] ?? '/').slice(1);
    const rawSegs = rest.split('/');
    const head = rawSegs[0];
    const openGuarded = head === 'JSESSION' || (head === 'services' && rawSegs[1] === 'auth');
    if (!(await this.authenticate(ctx, openGuarded))) return;
    if (head === 'JSESSION' && rawSegs.length === 1) return jsession(ctx);
    if (head === 'services' && rawSegs[1] === 'auth') return formLogin(ctx);
    if (head === 'auth' && rawSegs.length === 1) return userAuth(ctx);
    if (head === 'services' && rawSegs[1] === 'tokens') return tokens(ctx, rawSegs.slice(2).map(safeDecode));
    const target = resolveArchive(rawSegs, this.state.store, this.state.auth, ctx.user!);
    if (!target) throw new HttpError(404, 'The server has not found anything matching the request URI');
    const get = ctx.method === 'GET' || ctx.method === 'HEAD';
    switch (target.kind) {
      case 'files':
        if (get) return getFiles(ctx, target);
        if (ctx.method === 'PUT' || ctx.method === 'POST') return putFiles(ctx, target);
        if (ctx.method === 'DELETE') return deleteFiles(ctx, target);
        break;
      case 'resource':
        return handleResource(ctx, target);
      case 'resources':
        if (get) return listResources(ctx, target.owners);
        break;
      case 'projects':
        if (get) return listProjects(ctx);
        break;
      case 'subjects':
        if (get) return listSubjects(ctx, target.scope);
        break;
      case 'experiments':
        if (get) return listExperiments(ctx, target.scope);
        break;
      case 'scans':
        if (get) return listScans(ctx, target.scope);
        break;
      case 'assessors':
        if (get) return listAssessors(ctx, target.scope);
        break;
      default:
        if (get) return itemView(ctx, target.kind, target.scope);
    }
    throw new HttpError(405, 'Method Not Allowed');
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'Invalid URL encoding');
  }
}

function parseCookies(h: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (h ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}
