// One request's state plus the only ways a handler may answer it. Everything funnels through
// here so latency, bandwidth caps and injected socket drops apply uniformly.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuthService, Session, UserSpec } from './auth.js';
import { HttpError, restletStatusPage } from './http.js';
import type { ArchiveStore } from './store.js';
import { ThrottledWriter } from './throttle.js';

export interface LiveOptions {
  latencyMs: number;
  bandwidthBytesPerSec: number;
  rangeSupport: boolean;
}

export interface EmulatorState {
  store: ArchiveStore;
  auth: AuthService;
  options: LiveOptions;
  startedAt: number;
}

export class DroppedError extends Error {}

export class Ctx {
  user: UserSpec | null = null;
  session: Session | null = null;
  /** Set-Cookie values to add to whatever response goes out. */
  readonly cookies: string[] = [];
  readonly query: URLSearchParams;
  readonly rawPath: string;
  readonly method: string;
  private readonly writer: ThrottledWriter;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly state: EmulatorState,
    /** Injected 'drop' fault: destroy the socket mid-body (or before headers without a body). */
    readonly drop: boolean,
  ) {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    this.rawPath = q >= 0 ? url.slice(0, q) : url;
    this.query = new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
    this.method = (req.method ?? 'GET').toUpperCase();
    this.writer = new ThrottledWriter(res, () => state.options.bandwidthBytesPerSec);
  }

  get isHead(): boolean {
    return this.method === 'HEAD';
  }

  /** Query flag as XNAT reads it ("true", case-insensitive). */
  flag(name: string): boolean {
    return (this.query.get(name) ?? '').toLowerCase() === 'true';
  }

  private killSocket(): never {
    this.req.socket.destroy();
    throw new DroppedError('fault injected: connection dropped');
  }

  /** Latency, then headers. A drop fault without a body dies here. */
  async head(status: number, headers: OutgoingHttpHeaders, expectBody: boolean): Promise<void> {
    if (this.state.options.latencyMs > 0) await sleep(this.state.options.latencyMs);
    if (this.drop && (!expectBody || this.isHead)) this.killSocket();
    if (this.cookies.length) headers['Set-Cookie'] = this.cookies;
    headers['Date'] ??= new Date().toUTCString();
    this.res.writeHead(status, headers);
  }

  /** Body bytes through the bandwidth cap; a drop fault cuts the stream after some bytes. */
  async body(chunk: Buffer, totalHint?: number): Promise<void> {
    if (this.isHead) return;
    if (this.drop) {
      const cutAt = Math.max(1, Math.min(64 * 1024, Math.floor((totalHint ?? 32 * 1024) / 2)));
      const room = cutAt - this.writer.bytes;
      if (room <= chunk.length) {
        if (room > 0) await this.writer.write(chunk.subarray(0, room));
        // give the bytes a moment to leave before the reset
        await sleep(20);
        this.killSocket();
      }
    }
    await this.writer.write(chunk);
  }

  async stream(src: Readable, totalHint?: number): Promise<void> {
    try {
      for await (const chunk of src as AsyncIterable<Buffer>) await this.body(chunk, totalHint);
    } finally {
      src.destroy();
    }
  }

  end(): void {
    if (!this.res.writableEnded && !this.res.destroyed) this.res.end();
  }

  async send(status: number, body: string | Buffer, contentType: string | null, extra: OutgoingHttpHeaders = {}): Promise<void> {
    const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const headers: OutgoingHttpHeaders = { ...extra, 'Content-Length': String(buf.length) };
    if (contentType) headers['Content-Type'] = contentType;
    await this.head(status, headers, buf.length > 0);
    if (buf.length) await this.body(buf, buf.length);
    this.end();
  }

  async sendError(e: HttpError): Promise<void> {
    if (e.body === 'empty') await this.send(e.status, '', null, e.headers);
    else await this.send(e.status, restletStatusPage(e.status, e.message), 'text/html', e.headers);
  }

  /** Reads a small request body (form logins); uploads never use this. */
  async smallBody(limit = 1 << 20): Promise<string> {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of this.req as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > limit) throw new HttpError(400, 'Request body too large');
      chunks.push(c);
    }
    return Buffer.concat(chunks).toString('utf8');
  }
}
