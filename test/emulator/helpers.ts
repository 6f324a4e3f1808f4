// Shared helpers for the emulator suites: speak plain HTTP to a started emulator.
import { request } from 'undici';
import type { RunningEmulator } from '../../src/emulator/index.js';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  json<T = any>(): T;
}

export interface CallOptions {
  /** "name:password"; null sends no credentials. Default demo:demo. */
  user?: string | null;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export async function call(emu: RunningEmulator, method: string, path: string, o: CallOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { 'user-agent': 'xnatfs-test/1.0', ...o.headers };
  const user = o.user === undefined ? 'demo:demo' : o.user;
  if (user !== null) headers.authorization = 'Basic ' + Buffer.from(user).toString('base64');
  const r = await request(emu.url + path, { method: method as 'GET', headers, body: o.body });
  const body = Buffer.from(await r.body.arrayBuffer());
  return {
    status: r.statusCode,
    headers: r.headers,
    body,
    text: body.toString('utf8'),
    json: () => JSON.parse(body.toString('utf8')),
  };
}

export const get = (emu: RunningEmulator, path: string, o?: CallOptions): Promise<Reply> => call(emu, 'GET', path, o);

/** Result rows of a JSON listing. */
export async function rows(emu: RunningEmulator, path: string, o?: CallOptions): Promise<Array<Record<string, string>>> {
  const r = await get(emu, path, o);
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.text.slice(0, 200)}`);
  return r.json().ResultSet.Result;
}

export function setCookies(r: Reply): string[] {
  const v = r.headers['set-cookie'];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

export function jsessionFrom(r: Reply): string | null {
  for (const c of setCookies(r)) {
    const m = /^JSESSIONID=([^;]+)/.exec(c);
    if (m) return m[1]!;
  }
  return null;
}

/** Builds a multipart/form-data body by hand (so tests control field names exactly). */
export function multipart(parts: Array<{ field: string; filename?: string; data: Buffer | string; type?: string }>): { body: Buffer; contentType: string } {
  const boundary = '----xnatfsTestBoundary7MA4YWxkTrZu0gW';
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let h = `--${boundary}\r\nContent-Disposition: form-data; name="${p.field}"`;
    if (p.filename !== undefined) h += `; filename="${p.filename}"`;
    h += '\r\n';
    if (p.filename !== undefined) h += `Content-Type: ${p.type ?? 'application/octet-stream'}\r\n`;
    chunks.push(Buffer.from(h + '\r\n'), Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}
