// Streaming multipart/form-data parser: part bodies go straight to the caller's Writable,
// so a 10 GiB upload never sits in memory (at most one chunk plus a boundary's worth).
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';

export interface PartInfo {
  fieldName: string;
  filename: string | null;
  contentType: string | null;
  headers: Record<string, string>;
}

export class MultipartError extends Error {}

export function boundaryOf(contentType: string): string | null {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2] ?? '').trim() : null;
}

function parseHeaders(block: string): PartInfo {
  const headers: Record<string, string> = {};
  for (const line of block.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const cd = headers['content-disposition'] ?? '';
  const param = (name: string): string | null => {
    const star = new RegExp(`;\\s*${name}\\*=(?:UTF-8'')?([^;]+)`, 'i').exec(cd);
    if (star) {
      try {
        return decodeURIComponent(star[1]!.trim().replace(/^"|"$/g, ''));
      } catch {
        /* fall through to the plain form */
      }
    }
    const m = new RegExp(`;\\s*${name}=(?:"((?:[^"\\\\]|\\\\.)*)"|([^;]*))`, 'i').exec(cd);
    if (!m) return null;
    // like commons-fileupload: a backslash only stops \" from ending the value, it is kept
    // (Windows browsers send C:\dir\name)
    return m[1] !== undefined ? m[1] : (m[2] ?? '').trim();
  };
  return { fieldName: param('name') ?? '', filename: param('filename'), contentType: headers['content-type'] ?? null, headers };
}

/**
 * Parses `body`. For each part `onPart` returns a Writable to receive the bytes (it is ended and
 * awaited when the part is complete) or null to collect the part as a small text field.
 */
export async function parseMultipart(
  body: Readable,
  boundary: string,
  onPart: (info: PartInfo) => Promise<Writable | null>,
): Promise<{ fields: Record<string, string>; parts: number }> {
  const delim = Buffer.from('\r\n--' + boundary, 'latin1');
  const fields: Record<string, string> = {};
  let buf: Buffer = Buffer.from('\r\n'); // lets the first delimiter match the same pattern
  let state: 'preamble' | 'afterDelim' | 'headers' | 'body' | 'done' = 'preamble';
  let sink: Writable | null = null;
  let fieldChunks: Buffer[] = [];
  let info: PartInfo | null = null;
  let parts = 0;

  const emit = async (b: Buffer): Promise<void> => {
    if (!b.length) return;
    if (sink) {
      if (!sink.write(b)) await once(sink, 'drain');
    } else if (fieldChunks.reduce((n, c) => n + c.length, 0) < 1 << 20) {
      fieldChunks.push(b);
    }
  };
  const closePart = async (): Promise<void> => {
    if (sink) {
      const s = sink;
      sink = null;
      const finished = once(s, 'finish');
      s.end();
      await finished;
    } else if (info) {
      fields[info.fieldName] = Buffer.concat(fieldChunks).toString('utf8');
    }
    fieldChunks = [];
    info = null;
  };

  const step = async (final: boolean): Promise<void> => {
    for (;;) {
      if (state === 'preamble') {
        const i = buf.indexOf(delim);
        if (i < 0) {
          buf = buf.subarray(Math.max(0, buf.length - delim.length));
          return;
        }
        buf = buf.subarray(i + delim.length);
        state = 'afterDelim';
      } else if (state === 'afterDelim') {
        if (buf.length < 2) return;
        if (buf[0] === 0x2d && buf[1] === 0x2d) {
          state = 'done';
          return;
        }
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return; // transport padding not yet complete
        buf = buf.subarray(eol + 2);
        state = 'headers';
      } else if (state === 'headers') {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buf.length > 64 * 1024) throw new MultipartError('multipart part headers too large');
          return;
        }
        info = parseHeaders(buf.subarray(0, end).toString('utf8'));
        buf = buf.subarray(end + 4);
        parts++;
        sink = await onPart(info);
        state = 'body';
      } else if (state === 'body') {
        const i = buf.indexOf(delim);
        if (i >= 0) {
          await emit(buf.subarray(0, i));
          buf = buf.subarray(i + delim.length);
          await closePart();
          state = 'afterDelim';
        } else {
          // keep a tail that might be the start of a delimiter split across chunks
          const keep = final ? 0 : delim.length - 1;
          const cut = Math.max(0, buf.length - keep);
          await emit(buf.subarray(0, cut));
          buf = buf.subarray(cut);
          return;
        }
      } else {
        return;
      }
    }
  };

  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if ((state as string) === 'done') continue; // drain the epilogue
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      await step(false);
    }
  } catch (e) {
    if (sink) (sink as Writable).destroy(e as Error);
    throw e;
  }
  if ((state as string) !== 'done') {
    if (sink) (sink as Writable).destroy();
    throw new MultipartError('multipart body ended before the closing boundary');
  }
  return { fields, parts };
}
