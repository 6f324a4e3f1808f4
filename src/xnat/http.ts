// HTTP transport for one XNAT server: one keep-alive undici Agent, a concurrency cap, bounded
// retries with jittered exponential backoff, and translation of transport failures to XnatError.
// Knows nothing about sessions (auth.ts) or XNAT objects (client.ts).
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import createDebug from 'debug';
import pLimit from 'p-limit';
import { Agent, type Dispatcher } from 'undici';
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
  /** Until response headers arrive (default 60 s; XNAT can be slow to start a zip). */
  headersMs?: number;
  /** Max gap between body chunks (default 120 s). */
  bodyMs?: number;
}

export interface HttpOptions {
  /** Normalised base URL, no trailing slash, may carry a context path (https://host/xnat). */
  baseUrl: string;
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
   * Overrides the client's headers timeout (0: none). undici counts it from the start of the
   * request and refreshes it only when the socket pushes back, so a body that trickles in as a
   * program writes it needs its own watchdog instead (content/streaming-upload.ts).
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
/** Errors after which the request may have reached the server: retried only if idempotent. */
const NETWORK_CODES = new Set([
  'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN',
  'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'ECONNABORTED',
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

export class HttpClient {
  readonly baseUrl: string;
  readonly origin: string;
  /** Path prefix of the base URL ("" or e.g. "/xnat"). */
  readonly contextPath: string;
  private readonly agent: Agent;
  private readonly limit: ReturnType<typeof pLimit>;
  private readonly retry: Required<RetryOptions>;
  private closed = false;

  private constructor(options: HttpOptions, ca: string[] | undefined) {
    const url = new URL(options.baseUrl);
    this.baseUrl = options.baseUrl;
    this.origin = url.origin;
    this.contextPath = url.pathname.replace(/\/+$/, '');
    const t = options.timeouts ?? {};
    this.agent = new Agent({
      keepAliveTimeout: 4_000, // below Tomcat's and Node's idle close, to avoid racing a closing socket
      keepAliveTimeoutThreshold: 1_000,
      headersTimeout: t.headersMs ?? 60_000,
      bodyTimeout: t.bodyMs ?? 120_000,
      connect: { timeout: t.connectMs ?? 10_000, ...(ca ? { ca } : {}), rejectUnauthorized: true },
    });
    this.limit = pLimit(Math.max(1, options.maxConcurrency ?? 8));
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
    return this.limit.pendingCount;
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.agent.close();
  }

  private async withRetries<T extends { status: number; headers: HttpResponse['headers'] }>(
    req: HttpRequest,
    consume: (res: { status: number; headers: HttpResponse['headers']; body: Readable }, attempts: number) => Promise<T>,
  ): Promise<T> {
    const idempotent = (req.retry ?? (req.method === 'GET' || req.method === 'HEAD' || req.method === 'DELETE' ? 'idempotent' : 'once')) === 'idempotent';
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new XnatError('network', `the connection to XNAT at ${this.baseUrl} was closed (unmounting)`);
      let retryAfterMs: number | null = null;
      try {
        const result = await this.limit(async () => {
          const t0 = Date.now();
          const res = await this.dispatch(req);
          log('%s %s → %d (%d ms, try %d)', req.method, redactPath(req.path), res.statusCode, Date.now() - t0, attempt);
          const retryable = idempotent && (RETRY_STATUS.has(res.statusCode) || (res.statusCode === 500 && (req.method === 'GET' || req.method === 'HEAD')));
          if (retryable && attempt < this.retry.maxTries && Date.now() - started < this.retry.maxTotalMs) {
            retryAfterMs = parseRetryAfter(headerValue(res.headers, 'retry-after'));
            res.body.resume(); // drain so the socket can be reused
            res.body.on('error', () => {});
            return null;
          }
          return consume({ status: res.statusCode, headers: res.headers, body: res.body }, attempt);
        });
        if (result !== null) return result;
      } catch (err) {
        if (err instanceof XnatError) throw err;
        if (isAbort(err, req.signal)) throw err;
        const code = errCode(err);
        log('%s %s failed: %s (try %d)', req.method, redactPath(req.path), code || (err as Error)?.message, attempt);
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

  private dispatch(req: HttpRequest): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...lowerKeys(req.headers ?? {}) };
    return this.agent.request({
      origin: this.origin,
      path: this.contextPath + req.path,
      method: req.method,
      headers,
      body: req.body ? req.body() : null,
      signal: req.signal,
      ...(req.headersTimeoutMs !== undefined ? { headersTimeout: req.headersTimeoutMs } : {}),
    });
  }

  private networkError(req: HttpRequest, err: unknown, attempts: number): XnatError {
    const code = errCode(err) || (err as Error)?.name || 'error';
    const what = `${req.method} ${redactPath(req.path)}`;
    const tries = attempts > 1 ? ` after ${attempts} tries` : '';
    if (TLS_CODES.test(code)) {
      return new XnatError('network', `the TLS certificate of XNAT at ${this.baseUrl} is not trusted (${code}): give its CA with --ca-file`, null, { cause: err });
    }
    if (code === 'ENOTFOUND') {
      return new XnatError('network', `the host of ${this.baseUrl} was not found (ENOTFOUND): check the URL`, null, { cause: err });
    }
    if (code === 'ECONNREFUSED') {
      return new XnatError('network', `XNAT at ${this.baseUrl} refused the connection${tries} (ECONNREFUSED): check the URL and that the server is up`, null, { cause: err });
    }
    return new XnatError('network', `lost the connection to XNAT at ${this.baseUrl} during ${what}${tries} (${code}): check your network and proxy, then retry`, null, { cause: err });
  }
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
