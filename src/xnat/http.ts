// HTTP transport for one XNAT server: one keep-alive undici Agent, a concurrency cap, bounded
// retries with jittered exponential backoff, and translation of transport failures to XnatError.
// Knows nothing about sessions (auth.ts) or XNAT objects (client.ts).
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import createDebug from 'debug';
import { Agent, type Dispatcher } from 'undici';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Slots, Standing } from './slots.js';
import { XnatError } from './types.js';

const log = createDebug('xnatfs:http');

/** xnatfs/<version>: a non-browser UA, so XNAT answers 401 instead of redirecting to its login page. */
export const USER_AGENT = `xnatfs/${readVersion()}`;

function readVersion(): string {
  // Read once at module load (src/xnat and dist/xnat are both two levels below package.json).
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';

export interface RetryOptions {
  /** Total attempts including the first (default 4). */
  maxTries?: number;
  /** First backoff in ms (default 200); doubles each retry, with full jitter. */
  baseDelayMs?: number;
  /** Longest single backoff (default 3000). */
  maxDelayMs?: number;
  /** No new attempt starts after this many ms since the first (default 20000). */
  maxTotalMs?: number;
}

export interface Timeouts {
  /** TCP+TLS connect (default 10 s). */
  connectMs?: number;
  /**
   * Until response headers arrive, counted from when the request asked for a connection slot,
   * not from when it got one (default 60 s; XNAT can be slow to start a zip).
   */
  headersMs?: number;
  /** Max gap between body chunks (default 120 s). */
  bodyMs?: number;
  /** The whole logout at unmount (default 5 s): a hung server must not hold the exit. */
  logoutMs?: number;
}

export interface HttpOptions {
  /** Normalised base URL, no trailing slash, may carry a context path (https://host/xnat). */
  baseUrl: string;
  /** Requests in flight at once (default 8); background ones get at most MAX_BACKGROUND_SHARE. */
  maxConcurrency?: number;
  /** Extra CA certificate(s) in PEM, added to Node's root store. TLS is always verified. */
  caFile?: string;
  timeouts?: Timeouts;
  retry?: RetryOptions;
}

export interface HttpRequest {
  method: Method;
  /** Path + query relative to the base URL, starting with '/', already encoded. */
  path: string;
  headers?: Record<string, string>;
  /** Called once per attempt, so a retried request gets a fresh body stream. */
  body?: () => Readable | Buffer | string;
  /**
   * 'idempotent': retried on network errors and 429/502/503/504 (+500 for GET/HEAD).
   * 'once' (default for POST/PUT): retried only when the connection never opened.
   */
  retry?: 'idempotent' | 'once';
  signal?: AbortSignal;
  /**
   * Prefetch: waits behind every foreground request, never takes the last connection slots, and
   * is refused at once while the server is not answering (see HttpClient.unresponsive). A
   * Standing may be promoted meanwhile: the request is then foreground from that moment.
   */
  background?: boolean | Standing;
  /**
   * Overrides the client's headers timeout (0: none), which counts the wait for a slot too.
   * undici counts it from the start of the request and refreshes it only when the socket pushes
   * back, so a body that trickles in as a program writes it needs its own watchdog instead
   * (content/streaming-upload.ts).
   */
  headersTimeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
  /** Attempts made (1 = no retry). */
  attempts: number;
}

export interface TextResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  attempts: number;
}

const RETRY_STATUS = new Set([429, 502, 503, 504]);
/**
 * Errors after which the request may have reached the server: retried only if idempotent.
 * Not the headers and body timeouts: the whole timeout has been waited already (60 s, 120 s),
 * beyond the retry budget, and a server that let it pass is not answering.
 */
const NETWORK_CODES = new Set([
  'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'ECONNABORTED',
]);
/** Errors where nothing was sent: safe to retry for any method. */
const PRE_SEND_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT']);

/** Header names whose values never reach a log. */
const SECRET_HEADERS = new Set(['authorization', 'cookie', 'set-cookie', 'proxy-authorization']);

export function redactHeaders(h: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(h)) out[k] = SECRET_HEADERS.has(k.toLowerCase()) ? '<redacted>' : v;
  return out;
}

export function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function errCode(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return '';
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return (signal?.aborted ?? false) || (err as { name?: string })?.name === 'AbortError';
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|HOSTNAME|ALTNAME/;

/**
 * Share of the slots that background requests (prefetch) may hold: the rest stay free for what a
 * program waits on, so a read never queues behind a folder's prefetch (8 slots: 6 background).
 */
const MAX_BACKGROUND_SHARE = 0.75;

/** At close, how long requests still in flight may finish before their sockets are destroyed. */
const CLOSE_GRACE_MS = 1_000;

export class HttpClient {
  readonly baseUrl: string;
  readonly origin: string;
  /** Path prefix of the base URL ("" or e.g. "/xnat"). */
  readonly contextPath: string;
  readonly timeouts: Required<Timeouts>;
  private readonly agent: Agent;
  private readonly slots: Slots;
  private readonly retry: Required<RetryOptions>;
  private closed = false;
  /** When response headers last arrived (any request). */
  private lastAnswerAt = Date.now();
  /** When a request waited its whole headers timeout with no answer to any request meanwhile (0: answering). */
  private silentSince = 0;

  private constructor(options: HttpOptions, ca: string[] | undefined) {
    const url = new URL(options.baseUrl);
    this.baseUrl = options.baseUrl;
    this.origin = url.origin;
    this.contextPath = url.pathname.replace(/\/+$/, '');
    const t = options.timeouts ?? {};
    this.timeouts = { connectMs: t.connectMs ?? 10_000, headersMs: t.headersMs ?? 60_000, bodyMs: t.bodyMs ?? 120_000, logoutMs: t.logoutMs ?? 5_000 };
    this.agent = new Agent({
      keepAliveTimeout: 4_000, // below Tomcat's and Node's idle close, to avoid racing a closing socket
      keepAliveTimeoutThreshold: 1_000,
      headersTimeout: this.timeouts.headersMs,
      bodyTimeout: this.timeouts.bodyMs,
      connect: { timeout: this.timeouts.connectMs, ...(ca ? { ca } : {}), rejectUnauthorized: true },
    });
    const max = Math.max(1, options.maxConcurrency ?? 8);
    this.slots = new Slots(max, Math.max(1, Math.floor(max * MAX_BACKGROUND_SHARE)));
    this.retry = {
      maxTries: options.retry?.maxTries ?? 4,
      baseDelayMs: options.retry?.baseDelayMs ?? 200,
      maxDelayMs: options.retry?.maxDelayMs ?? 3_000,
      maxTotalMs: options.retry?.maxTotalMs ?? 20_000,
    };
  }

  static async create(options: HttpOptions): Promise<HttpClient> {
    let ca: string[] | undefined;
    if (options.caFile) {
      let pem: string;
      try {
        pem = await readFile(options.caFile, 'utf8');
      } catch (err) {
        throw new XnatError('network', `cannot read the CA file ${options.caFile} (${errCode(err) || String(err)}): check --ca-file`, null, { cause: err });
      }
      ca = [...rootCertificates, pem];
    }
    return new HttpClient(options, ca);
  }

  /** Number of requests waiting for a slot (for tests and status). */
  get pending(): number {
    return this.slots.pending;
  }

  /**
   * The server has not answered any request for a whole headers timeout. Background requests
   * are refused meanwhile (each would only wait its own timeout), until some response arrives
   * or another headers timeout has passed (then one may try again).
   */
  get unresponsive(): boolean {
    return this.silentSince > 0 && this.lastAnswerAt < this.silentSince && Date.now() - this.silentSince < this.timeouts.headersMs;
  }

  /**
   * Send a request and return the response with its body as a stream. The concurrency slot is
   * held until headers arrive; open download streams are not counted (the content layer bounds
   * those), so a paused stream can never starve other requests. No retry once the caller has
   * the body: the content layer resumes with Range.
   */
  async request(req: HttpRequest): Promise<HttpResponse> {
    return this.withRetries(req, async (res, attempts) => ({ ...res, attempts }));
  }

  /** Send a request and read the whole body as text; truncated bodies are retried like resets. */
  async requestText(req: HttpRequest, maxBytes = 512 * 1024 * 1024): Promise<TextResponse> {
    return this.withRetries(req, async (res, attempts) => {
      const text = await readText(res.body, maxBytes);
      return { status: res.status, headers: res.headers, text, attempts };
    });
  }

  /**
   * The logout at unmount: at most `timeouts.logoutMs` in all (queue, connect, headers and
   * body), so a hung server cannot keep the process after the mount is gone.
   */
  async requestTextBounded(req: HttpRequest, ms = this.timeouts.logoutMs): Promise<TextResponse> {
    const signal = AbortSignal.timeout(ms);
    try {
      return await this.requestText({ ...req, signal, headersTimeoutMs: ms });
    } catch (err) {
      if (signal.aborted) {
        throw new XnatError('network', `XNAT at ${this.baseUrl} did not answer ${req.method} ${redactPath(req.path)} within ${ms / 1000} s`, null, { cause: err, timedOut: true });
      }
      throw err;
    }
  }

  /**
   * Refuse new requests, drop queued ones, and give those still waiting for headers
   * CLOSE_GRACE_MS before their connections are destroyed: undici's close() would wait out a
   * hung server's full timeouts (and a destroy() after it no longer cuts them short).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.slots.dropAll(() => this.closedError());
    let timer: NodeJS.Timeout | undefined;
    const idle = await Promise.race([
      this.slots.idle().then(() => true),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), CLOSE_GRACE_MS))),
    ]);
    clearTimeout(timer);
    if (idle) {
      await this.agent.close();
    } else {
      log('closing: requests still unanswered after %d ms; destroying their connections', CLOSE_GRACE_MS);
      await this.agent.destroy().catch(() => undefined);
    }
  }

  private closedError(): XnatError {
    return new XnatError('network', `the connection to XNAT at ${this.baseUrl} was closed (unmounting)`);
  }

  private async withRetries<T extends { status: number; headers: HttpResponse['headers'] }>(
    req: HttpRequest,
    consume: (res: { status: number; headers: HttpResponse['headers']; body: Readable }, attempts: number) => Promise<T>,
  ): Promise<T> {
    const idempotent = (req.retry ?? (req.method === 'GET' || req.method === 'HEAD' || req.method === 'DELETE' ? 'idempotent' : 'once')) === 'idempotent';
    const standing = req.background instanceof Standing ? req.background : null;
    const headersMs = req.headersTimeoutMs ?? this.timeouts.headersMs;
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw this.closedError();
      const background = standing ? standing.background : req.background === true;
      if (background && this.unresponsive) throw this.silentError(req, 'skipped');
      let retryAfterMs: number | null = null;
      // The headers timeout counts from here, the wait for a slot included: undici's own clock
      // starts only at dispatch, and a request queued behind hung ones would wait for theirs first.
      const queuedAt = Date.now();
      try {
        const wait = this.slots.acquire({
          background,
          ...(standing ? { standing } : {}),
          deadlineMs: headersMs,
          onDeadline: () => this.queueTimeout(req, headersMs),
          ...(req.signal ? { signal: req.signal } : {}),
        });
        if (wait) await wait;
        if (this.closed) {
          this.slots.release();
          throw this.closedError();
        }
        let result: T | null;
        try {
          const t0 = Date.now();
          const left = headersMs > 0 ? Math.max(1, headersMs - (t0 - queuedAt)) : 0;
          const res = await this.dispatch(req, left === headersMs && req.headersTimeoutMs === undefined ? undefined : left);
          this.lastAnswerAt = Date.now();
          log('%s %s → %d (%d ms, try %d)', req.method, redactPath(req.path), res.statusCode, this.lastAnswerAt - t0, attempt);
          const retryable = idempotent && (RETRY_STATUS.has(res.statusCode) || (res.statusCode === 500 && (req.method === 'GET' || req.method === 'HEAD')));
          if (retryable && attempt < this.retry.maxTries && Date.now() - started < this.retry.maxTotalMs) {
            retryAfterMs = parseRetryAfter(headerValue(res.headers, 'retry-after'));
            res.body.resume(); // drain so the socket can be reused
            res.body.on('error', () => {});
            result = null;
          } else {
            result = await consume({ status: res.statusCode, headers: res.headers, body: res.body }, attempt);
            // A body that took long to arrive is an answer too: the server is not silent.
            this.lastAnswerAt = Date.now();
          }
        } finally {
          this.slots.release();
        }
        if (result !== null) return result;
      } catch (err) {
        if (err instanceof XnatError) throw err;
        if (isAbort(err, req.signal)) throw err;
        if (this.closed) throw this.closedError(); // destroyed by close()
        const code = errCode(err);
        log('%s %s failed: %s (try %d)', req.method, redactPath(req.path), code || (err as Error)?.message, attempt);
        // Only the client's own timeout says the server is silent (the logout's 5 s does not).
        if (code === 'UND_ERR_HEADERS_TIMEOUT' && req.headersTimeoutMs === undefined) this.noteSilence(queuedAt);
        const retryable = PRE_SEND_CODES.has(code) || (idempotent && NETWORK_CODES.has(code));
        if (!retryable || attempt >= this.retry.maxTries || Date.now() - started >= this.retry.maxTotalMs) {
          throw this.networkError(req, err, attempt);
        }
      }
      const backoff = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
      const delay = retryAfterMs !== null ? Math.min(retryAfterMs, this.retry.maxDelayMs) : Math.random() * backoff;
      const remaining = this.retry.maxTotalMs - (Date.now() - started);
      await sleep(Math.max(0, Math.min(delay, remaining)), req.signal);
    }
  }

  /**
   * A request waited its whole headers timeout. If no other request was answered since it was
   * queued either, the server is not answering: queued prefetches are dropped at once rather
   * than each waiting out its own timeout, and new ones are refused for a while.
   */
  private noteSilence(queuedAt: number): void {
    if (this.lastAnswerAt >= queuedAt || this.unresponsive) return;
    this.silentSince = Date.now();
    const dropped = this.slots.dropBackground(() => this.silentError(null, 'dropped'));
    log('XNAT at %s answered no request for %d ms; %d queued prefetch request(s) dropped, new ones refused until it answers', this.baseUrl, this.silentSince - queuedAt, dropped);
  }

  private silentError(req: HttpRequest | null, what: 'skipped' | 'dropped'): XnatError {
    const which = req ? `prefetch of ${req.method} ${redactPath(req.path)}` : 'prefetch';
    return new XnatError(
      'network',
      `XNAT at ${this.baseUrl} has answered no request for ${seconds(this.timeouts.headersMs)}: it is overloaded or not responding; try again later (${which} ${what})`,
      null,
      { timedOut: true },
    );
  }

  /**
   * A request that never got a slot within its headers timeout. Not a sign of silence by itself:
   * the slots may be held by bodies still arriving (long listings) or being sent (uploads).
   */
  private queueTimeout(req: HttpRequest, headersMs: number): XnatError {
    return new XnatError(
      'network',
      `XNAT at ${this.baseUrl} did not answer ${req.method} ${redactPath(req.path)} within ${seconds(headersMs)}: all ${this.slots.max} connections stayed busy with earlier requests; it is overloaded or not responding, or raise --max-concurrency; try again later`,
      null,
      { timedOut: true },
    );
  }

  private dispatch(req: HttpRequest, headersTimeout: number | undefined): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...lowerKeys(req.headers ?? {}) };
    return this.agent.request({
      origin: this.origin,
      path: this.contextPath + req.path,
      method: req.method,
      headers,
      body: req.body ? req.body() : null,
      signal: req.signal,
      ...(headersTimeout !== undefined ? { headersTimeout } : {}),
    });
  }

  private networkError(req: HttpRequest, err: unknown, attempts: number): XnatError {
    const code = errCode(err) || (err as Error)?.name || 'error';
    const what = `${req.method} ${redactPath(req.path)}`;
    const tries = attempts > 1 ? ` after ${attempts} tries` : '';
    if (TLS_CODES.test(code)) {
      return new XnatError('network', `the TLS certificate of XNAT at ${this.baseUrl} is not trusted (${code}): give its CA with --ca-file`, null, { cause: err });
    }
    if (code === 'ENOTFOUND') return hostNotFound(this.baseUrl, err);
    if (code === 'ECONNREFUSED') {
      return new XnatError('network', `XNAT at ${this.baseUrl} refused the connection${tries} (ECONNREFUSED): check the URL and that the server is up`, null, { cause: err });
    }
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      const ms = req.headersTimeoutMs ?? this.timeouts.headersMs;
      return new XnatError('network', `XNAT at ${this.baseUrl} did not answer ${what} within ${seconds(ms)}${tries} (${code}): it is overloaded or not responding; try again later`, null, { cause: err, timedOut: true });
    }
    if (code === 'UND_ERR_CONNECT_TIMEOUT') {
      return new XnatError('network', `could not connect to XNAT at ${this.baseUrl} within ${seconds(this.timeouts.connectMs)}${tries} (${code}): check the URL, your network and that the server is up`, null, { cause: err, timedOut: true });
    }
    const timedOut = code === 'UND_ERR_BODY_TIMEOUT';
    return new XnatError('network', `lost the connection to XNAT at ${this.baseUrl} during ${what}${tries} (${code}): check your network and proxy, then retry`, null, { cause: err, timedOut });
  }
}

/** "60 s", or "0.5 s" for the short timeouts of tests. */
function seconds(ms: number): string {
  return `${ms >= 10_000 ? Math.round(ms / 1000) : ms / 1000} s`;
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

/** Query strings carry no secrets here, but keep log lines short. */
function redactPath(path: string): string {
  return path.length > 300 ? `${path.slice(0, 297)}...` : path;
}

function parseRetryAfter(v: string | undefined): number | null {
  if (!v) return null;
  const secs = Number(v);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : null;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Read a body to a UTF-8 string, refusing absurdly large ones. */
export async function readText(body: Readable, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > maxBytes) {
      body.destroy();
      throw new XnatError('protocol', `XNAT sent more than ${maxBytes} bytes where a listing was expected`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function hostNotFound(baseUrl: string, cause: unknown): XnatError {
  return new XnatError('network', `the host of ${baseUrl} was not found (ENOTFOUND): check the URL`, null, { cause });
}

/**
 * Fails when DNS says the server's host does not exist. Asked before the credentials: a typo in
 * the URL was otherwise answered "no credentials for <typo>" (or with a password prompt), which
 * sends a new user to edit ~/.netrc. Any other DNS trouble is left to the first request.
 */
export async function checkHostExists(baseUrl: string, resolve: (host: string) => Promise<unknown> = lookup): Promise<void> {
  const host = new URL(baseUrl).hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) !== 0) return;
  try {
    await resolve(host);
  } catch (err) {
    if (errCode(err) === 'ENOTFOUND') throw hostNotFound(baseUrl, err);
  }
}
