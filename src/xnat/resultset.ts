// Parsing XNAT's table envelope {"ResultSet":{"Result":[{…}], …meta}} into plain rows, and cell
// coercion. Real servers send every cell as a string, keys in any order, extra columns, "" for NULL,
// and sometimes no totalRecords; all of that is tolerated. Anything else is a 'protocol' error.
// Cost: one JSON.parse plus a constant amount of work per cell read; no per-row regexes.
import { extractHtmlMessage } from './errors.js';
import { XnatError } from './types.js';

export type Row = Readonly<Record<string, unknown>>;

export interface ParseContext {
  baseUrl: string;
  /** e.g. "GET /data/projects" — for the error message. */
  what: string;
}

function protocolError(ctx: ParseContext, detail: string): XnatError {
  return new XnatError(
    'protocol',
    `XNAT at ${ctx.baseUrl} sent ${detail} for ${ctx.what}; check the URL (include any context path, e.g. https://host/xnat) and that it is an XNAT server`,
  );
}

/** Parse a ResultSet JSON body into its rows. */
export function parseResultSet(text: string, ctx: ParseContext): Row[] {
  const head = text.trimStart().slice(0, 1);
  if (head === '<') {
    const msg = extractHtmlMessage(text);
    throw protocolError(ctx, `an HTML page${msg ? ` ("${msg}")` : ''} instead of JSON`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw protocolError(ctx, `a body that is not JSON (${text.length} bytes)`);
  }
  const rs = isObject(doc) ? doc['ResultSet'] : undefined;
  if (!isObject(rs)) throw protocolError(ctx, 'JSON without a ResultSet');
  const result = rs['Result'];
  if (result === undefined || result === null) return []; // some servers omit Result when empty
  if (!Array.isArray(result)) throw protocolError(ctx, 'a ResultSet whose Result is not a list');
  for (let i = 0; i < result.length; i++) {
    if (!isObject(result[i])) throw protocolError(ctx, `a ResultSet row ${i} that is not an object`);
  }
  return result as Row[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A cell by key: the exact key first (the normal case, no extra work), then a case-insensitive
 * match, so "ID"/"id" or "cat_ID"/"cat_id" differences between versions don't lose data.
 */
export function cell(row: Row, ...keys: string[]): unknown {
  for (const k of keys) {
    const v = row[k];
    if (v !== undefined) return v;
  }
  const wanted = keys.map((k) => k.toLowerCase());
  for (const k in row) {
    if (wanted.includes(k.toLowerCase())) return row[k];
  }
  return undefined;
}

/** Cell as a string: numbers/booleans stringified, null/missing → "". */
export function str(row: Row, ...keys: string[]): string {
  const v = cell(row, ...keys);
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return '';
}

/** Cell as a number; "" / null / missing / unparsable → null. */
export function numOrNull(row: Row, ...keys: string[]): number | null {
  const v = cell(row, ...keys);
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v !== 'string') return null;
  const t = v.trim();
  if (t === '') return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}
