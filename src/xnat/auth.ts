// XNAT session handling. Log in once with Basic credentials at /data/JSESSION, keep JSESSIONID in a
// cookie jar, and send only the cookie afterwards (Basic on every call would pile up sessions on
// the server, which caps them per user). When XNAT says the session is gone — 401, or a login page
// (redirect to Login.vm, or an HTML page with a login form) — log in again once, single-flight, and
// repeat the request once. A login that fails with 401 is remembered, so a wrong password never
// turns into a burst of failed logins (20 of them lock the account).
import { Readable } from 'node:stream';
import createDebug from 'debug';
import { CookieJar } from 'tough-cookie';
import { credentialHint, type ResolvedCredentials } from './credentials.js';
import { extractBodyMessage } from './errors.js';
import { headerValue, type HttpClient, type HttpRequest, type HttpResponse, type TextResponse } from './http.js';
import { XnatError } from './types.js';

const log = createDebug('xnatfs:auth');

const LOGIN_LOCATION = /Login\.vm|\/login\b|\/app\/template\/Login/i;
const LOGIN_FORM = /<form[^>]*(login|j_spring_security_check)|name=["']?(password|j_password)["'\s>]/i;
/** Bytes of an HTML 200 answer inspected for a login form. */
const PEEK_BYTES = 64 * 1024;
/** Log in again this long before XNAT's idle timeout would end the session (at most a tenth of it). */
const SESSION_MARGIN_MS = 30_000;

export function isLoginRedirect(status: number, location: string | undefined): boolean {
  return status >= 300 && status < 400 && location !== undefined && LOGIN_LOCATION.test(location);
}

export function isLoginPage(html: string): boolean {
  return LOGIN_FORM.test(html);
}

function isHtml(headers: HttpResponse['headers']): boolean {
  return /text\/html/i.test(headerValue(headers, 'content-type') ?? '');
}

export class Session {
  private readonly jar = new CookieJar();
  /** Bumped at each successful login; a 401 on an older generation doesn't trigger a new login. */
  private generation = 0;
  private loggingIn: Promise<void> | null = null;
  private loginFailure: XnatError | null = null;
  private loggedIn = false;
  /** Logins performed (for status and tests). */
  logins = 0;
  /** XNAT's idle timeout, from its SESSION_EXPIRATION_TIME cookie (null: not sent). */
  private idleTimeoutMs: number | null = null;
  /**
   * When the latest request XNAT answered within the current session was sent: XNAT restarts a
   * session's idle clock when a request arrives, not when its answer is done, so an upload that
   * outlasts the timeout may end with the session already gone.
   */
  private lastAnsweredAt = 0;

  constructor(
    private readonly http: HttpClient,
    private readonly credentials: ResolvedCredentials,
  ) {}

  private borrowedSessionInvalid(status: number | null): XnatError {
    const source = this.credentials.kind === 'jsession' && this.credentials.source === 'env' ? 'XNAT_JSESSION' : '--jsession';
    return new XnatError(
      'unauthorized',
      `the XNAT session given by ${source} has expired or is not valid at ${this.http.baseUrl}: log in again in the browser and pass the new JSESSIONID, or use XNAT_USER/XNAT_PASS or ~/.netrc`,
      status,
    );
  }

  /** Start: log in with credentials, or install the given JSESSIONID. */
  async start(): Promise<void> {
    if (this.credentials.kind === 'jsession') {
      await this.jar.setCookie(`JSESSIONID=${this.credentials.jsession}; Path=${this.cookiePath()}`, this.cookieUrl());
      // A borrowed session may be expired or mistyped: ask now (XNAT answers 401 for either),
      // so it fails before mounting, as a wrong password does, instead of at the first ls.
      // Other answers (a server without /data/auth) prove nothing either way.
      const res = await this.requestText({ method: 'GET', path: '/data/auth', retry: 'idempotent' });
      log('session check: GET /data/auth → %d', res.status);
      // A site open to guests answers an unknown session as the guest user, not with 401.
      if (res.status === 200 && /^User 'guest' is logged in/.test(res.text.trim())) throw this.borrowedSessionInvalid(200);
      this.loggedIn = true;
      return;
    }
    await this.ensureLogin(this.generation);
  }

  /**
   * A request with the session cookie; the body is a stream. `htmlIsContent`: an HTML answer is
   * what was asked for (an .html file), never taken for a login page.
   */
  async request(req: HttpRequest, options: { htmlIsContent?: boolean } = {}): Promise<HttpResponse> {
    return this.withSession<HttpResponse>(req, async (r) => {
      const res = await this.http.request(r);
      if (await this.storeCookies(res.headers, r.headers?.['cookie'] ?? '')) {
        res.body.resume();
        res.body.on('error', () => {});
        return { expired: true as const, status: res.status };
      }
      // XNAT sends files as attachments; its login page never is one.
      const attachment = /attachment/i.test(headerValue(res.headers, 'content-disposition') ?? '');
      if (res.status === 200 && isHtml(res.headers) && !attachment && !options.htmlIsContent) {
        // Peek without losing bytes: an HTML file in a resource is legitimate content.
        const { head, body } = await peek(res.body, PEEK_BYTES);
        if (isLoginPage(head.toString('utf8'))) {
          body.destroy();
          return { expired: true as const };
        }
        return { expired: false as const, value: { ...res, body } };
      }
      if (res.status === 401 || isLoginRedirect(res.status, headerValue(res.headers, 'location'))) {
        res.body.resume();
        res.body.on('error', () => {});
        return { expired: true as const, status: res.status };
      }
      return { expired: false as const, value: res };
    });
  }

  /** A request with the session cookie; the body is read as text. */
  async requestText(req: HttpRequest): Promise<TextResponse> {
    return this.withSession<TextResponse>(req, async (r) => {
      const res = await this.http.requestText(r);
      const replaced = await this.storeCookies(res.headers, r.headers?.['cookie'] ?? '');
      const expired =
        replaced ||
        res.status === 401 ||
        isLoginRedirect(res.status, headerValue(res.headers, 'location')) ||
        (res.status === 200 && isHtml(res.headers) && isLoginPage(res.text.slice(0, PEEK_BYTES)));
      return expired ? { expired: true as const, status: res.status } : { expired: false as const, value: res };
    });
  }

  /**
   * Log out (credentials mode only: a --jsession session belongs to the user's browser). Bounded
   * (5 s): it runs at unmount, after the mount is gone, and a hung server would otherwise hold
   * the process for its full timeouts; the session then simply expires on the server.
   */
  async logout(): Promise<void> {
    if (this.credentials.kind !== 'password' || !this.loggedIn) return;
    this.loggedIn = false;
    try {
      const res = await this.http.requestTextBounded({ method: 'DELETE', path: '/data/JSESSION', headers: await this.cookieHeader(), retry: 'once' });
      log('logout → %d', res.status);
    } catch (err) {
      log('logout failed (ignored; the session expires on the server): %s', (err as Error).message);
    }
  }

  private async withSession<T>(
    req: HttpRequest,
    send: (r: HttpRequest) => Promise<{ expired: true; status?: number } | { expired: false; value: T }>,
  ): Promise<T> {
    if (this.loginFailure) throw this.loginFailure;
    if (this.loggingIn) await this.loggingIn;
    for (let round = 0; ; round++) {
      let gen = this.generation;
      if (round === 0 && this.idleExpired()) {
        // A site open to guests serves an expired session as the guest user (200, with fewer
        // projects and files) instead of 401, and nothing would say so. Log in before that.
        log('session idle for %d s of XNAT\'s %d: logging in again before %s %s', Math.round((Date.now() - this.lastAnsweredAt) / 1000), Math.round(this.idleTimeoutMs! / 1000), req.method, stripQuery(req.path));
        await this.ensureLogin(gen);
        gen = this.generation;
      }
      const sentAt = Date.now();
      const out = await send({ ...req, headers: { ...req.headers, ...(await this.cookieHeader()) } });
      if (!out.expired) {
        // Sent, not answered (see lastAnsweredAt); and a session replaced meanwhile is not renewed.
        if (gen === this.generation) this.lastAnsweredAt = Math.max(this.lastAnsweredAt, sentAt);
        return out.value;
      }
      log('%s %s: session not accepted (%s, round %d)', req.method, req.path, out.status ?? 'login page', round);
      if (this.credentials.kind === 'jsession') {
        throw this.borrowedSessionInvalid(out.status ?? null);
      }
      if (round >= 1) {
        throw new XnatError(
          'unauthorized',
          `XNAT at ${this.http.baseUrl} still refused the session for user '${this.credentials.user}' right after logging in again (${req.method} ${stripQuery(req.path)}): the account may be disabled or the token revoked; ${credentialHint(this.credentials)}`,
          out.status ?? 401,
        );
      }
      await this.ensureLogin(gen);
    }
  }

  /** Our own login's session has (nearly) reached XNAT's idle timeout. */
  private idleExpired(): boolean {
    if (this.credentials.kind !== 'password' || !this.loggedIn || this.idleTimeoutMs === null) return false;
    const margin = Math.min(SESSION_MARGIN_MS, this.idleTimeoutMs / 10);
    return Date.now() - this.lastAnsweredAt > this.idleTimeoutMs - margin;
  }

  /** Log in unless someone already did since `seenGeneration`; concurrent callers share one login. */
  private async ensureLogin(seenGeneration: number): Promise<void> {
    if (this.loginFailure) throw this.loginFailure;
    if (this.generation !== seenGeneration) return;
    if (!this.loggingIn) {
      this.loggingIn = this.login().finally(() => {
        this.loggingIn = null;
      });
    }
    await this.loggingIn;
  }

  private async login(): Promise<void> {
    const c = this.credentials;
    if (c.kind !== 'password') throw new Error('login without credentials');
    // Start from an empty jar: an expired JSESSIONID must not ride along with the Basic login.
    await this.jar.removeAllCookies();
    const auth = `Basic ${Buffer.from(`${c.user}:${c.password}`, 'utf8').toString('base64')}`;
    const attempt = (method: 'POST' | 'GET') =>
      this.http.requestText({ method, path: '/data/JSESSION', headers: { authorization: auth }, retry: 'idempotent' });
    let res = await attempt('POST');
    if (res.status === 405 || res.status === 404 || res.status === 501) {
      log('POST /data/JSESSION → %d, trying GET', res.status);
      res = await attempt('GET');
    }
    if (res.status === 401 || res.status === 403) {
      const detail = extractBodyMessage(res.text, headerValue(res.headers, 'content-type'));
      this.loginFailure = new XnatError(
        'unauthorized',
        `XNAT at ${this.http.baseUrl} refused the login for user '${c.user}' (${res.status}${detail ? `: ${detail}` : ''}): ${credentialHint(c)}`,
        res.status,
      );
      throw this.loginFailure;
    }
    if (res.status !== 200 && res.status !== 201) {
      const detail = extractBodyMessage(res.text, headerValue(res.headers, 'content-type'));
      throw new XnatError(
        res.status >= 500 ? 'server' : 'protocol',
        `XNAT at ${this.http.baseUrl} answered ${res.status} to the login at /data/JSESSION${detail ? `: ${detail}` : ''}; check the URL: the server's address without /data (include any context path, e.g. https://host/xnat)`,
        res.status,
      );
    }
    const body = res.text.trim();
    if (body.startsWith('<')) {
      throw new XnatError(
        'protocol',
        `XNAT at ${this.http.baseUrl} sent an HTML page instead of a session id at /data/JSESSION; check the URL (include any context path, e.g. https://host/xnat)`,
        res.status,
      );
    }
    await this.storeCookies(res.headers);
    const cookies = await this.jar.getCookies(this.cookieUrl());
    if (!cookies.some((k) => k.key === 'JSESSIONID')) {
      // The body is the bare session id (XNAT's UserSession resource); "; XNAT_CSRF=…" may follow.
      const id = body.split(';', 1)[0]!.trim();
      if (!/^[A-Za-z0-9._-]+$/.test(id)) {
        throw new XnatError('protocol', `XNAT at ${this.http.baseUrl} sent no session cookie and no session id at /data/JSESSION`);
      }
      await this.jar.setCookie(`JSESSIONID=${id}; Path=${this.cookiePath()}`, this.cookieUrl());
    }
    this.generation++;
    this.logins++;
    this.loggedIn = true;
    this.lastAnsweredAt = Date.now();
    log('logged in to %s as %s (login #%d)', this.http.baseUrl, c.user, this.logins);
  }

  private cookieUrl(): string {
    return `${this.http.origin}${this.http.contextPath}/data/`;
  }

  private cookiePath(): string {
    return this.http.contextPath === '' ? '/' : this.http.contextPath;
  }

  private async cookieHeader(): Promise<Record<string, string>> {
    const s = await this.jar.getCookieString(this.cookieUrl());
    return s ? { cookie: s } : {};
  }

  /**
   * Keep the server's cookies. With `sent` (the Cookie header of a request, not the login's), a
   * JSESSIONID other than the one sent is not kept and the answer says true: XNAT did not know
   * our session and started another, which on a site open to guests is the guest's (200, fewer
   * projects) and, kept, would serve every later request as the guest with nothing to say so.
   */
  private async storeCookies(headers: HttpResponse['headers'], sent?: string): Promise<boolean> {
    const set = headers['set-cookie'];
    const list = set === undefined ? [] : Array.isArray(set) ? set : [set];
    const ours = sent === undefined ? undefined : /(?:^|;\s*)JSESSIONID=([^;]*)/.exec(sent)?.[1];
    let replaced = false;
    for (const c of list) {
      const id = /^\s*JSESSIONID=([^;]*)/i.exec(c)?.[1];
      if (sent !== undefined && id !== undefined && id.trim() !== ours) {
        replaced = true;
        continue;
      }
      // "<server ms>,<timeout ms>" (xnat-api.md §2.10): only the timeout is used, not the server's clock.
      const expiry = /^\s*SESSION_EXPIRATION_TIME="?\d+,(\d+)"?/i.exec(c);
      if (expiry && Number(expiry[1]) > 0) this.idleTimeoutMs = Number(expiry[1]);
      try {
        await this.jar.setCookie(c, this.cookieUrl(), { ignoreError: true });
      } catch {
        // A malformed cookie from the server is not our problem; keep the old session.
      }
    }
    return replaced;
  }
}

function stripQuery(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/** Read up to n bytes of a stream and give back a stream that still yields every byte. */
export async function peek(body: Readable, n: number): Promise<{ head: Buffer; body: Readable }> {
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let len = 0;
  let done = false;
  while (len < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    chunks.push(r.value);
    len += r.value.length;
  }
  const head = Buffer.concat(chunks);
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      if (done) return;
      for (;;) {
        const r = await it.next();
        if (r.done) {
          done = true;
          return;
        }
        yield r.value;
      }
    } finally {
      if (!done) await it.return?.();
    }
  }
  return { head, body: Readable.from(all(), { objectMode: false }) };
}
