// Large listings parsed a slice at a time. One JSON.parse of a 26 MB file listing (100,000 files
// of a big session) plus mapping its rows holds Node's main thread, and with it every FUSE call,
// for about half a second. Here the Result array is cut at row boundaries (a scan that knows
// JSON strings, so braces inside names don't count), each slice of rows goes through JSON.parse
// and the row mapping, and the event loop gets a turn between slices.
import { parseResultSet, type ParseContext, type Row } from './resultset.js';

/** Characters of rows per slice: a few milliseconds of parsing and mapping. */
const SLICE_CHARS = 256 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The rows of a ResultSet body, each passed through `map`. Small bodies, and any body whose shape
 * the slicer does not follow, go through parseResultSet in one piece (same rows, same errors).
 */
export async function parseRows<T>(text: string, ctx: ParseContext, map: (row: Row) => T, sliceChars = SLICE_CHARS): Promise<T[]> {
  const whole = (): T[] => parseResultSet(text, ctx).map(map);
  if (text.length <= 2 * sliceChars) return whole();
  const array = resultArrayStart(text);
  if (array < 0) return whole();
  const out: T[] = [];
  let i = array + 1;
  let sliceStart = -1;
  let lastEnd = -1;
  const flush = (): boolean => {
    if (sliceStart < 0) return true;
    let rows: unknown;
    try {
      rows = JSON.parse(`[${text.slice(sliceStart, lastEnd + 1)}]`);
    } catch {
      return false;
    }
    for (const row of rows as unknown[]) {
      if (typeof row !== 'object' || row === null || Array.isArray(row)) return false;
      out.push(map(row as Row));
    }
    sliceStart = -1;
    return true;
  };
  for (let first = true; ; first = false) {
    i = skipSpace(text, i);
    let c = text.charCodeAt(i);
    if (c === CLOSE_BRACKET) break;
    if (!first) {
      if (c !== COMMA) return whole();
      i = skipSpace(text, i + 1);
      c = text.charCodeAt(i);
    }
    if (c !== OPEN_BRACE) return whole();
    const end = valueEnd(text, i);
    if (end < 0) return whole();
    if (sliceStart < 0) sliceStart = i;
    lastEnd = end;
    i = end + 1;
    if (lastEnd - sliceStart >= sliceChars) {
      if (!flush()) return whole();
      await yieldToEventLoop();
    }
  }
  if (!flush()) return whole();
  // The rest of the document (the wrapper and its meta) must be sound JSON too: a body cut short
  // after the rows is an error, as in one piece.
  try {
    JSON.parse(`${text.slice(0, array)}[]${text.slice(i + 1)}`);
  } catch {
    return whole();
  }
  return out;
}

/** Index of the `[` of ResultSet.Result, or -1 if the body is not shaped so. */
function resultArrayStart(text: string): number {
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_BRACE) return -1;
  i = keyValue(text, i + 1, 'ResultSet');
  if (i < 0 || text.charCodeAt(i) !== OPEN_BRACE) return -1;
  i = keyValue(text, i + 1, 'Result');
  return i >= 0 && text.charCodeAt(i) === OPEN_BRACKET ? i : -1;
}

/** Inside an object (just past its `{`): the index of the value of `key`, or -1. */
function keyValue(text: string, from: number, key: string): number {
  let i = from;
  for (;;) {
    i = skipSpace(text, i);
    if (text.charCodeAt(i) !== QUOTE) return -1;
    const keyEnd = stringEnd(text, i);
    if (keyEnd < 0) return -1;
    const name = text.slice(i + 1, keyEnd);
    i = skipSpace(text, keyEnd + 1);
    if (text.charCodeAt(i) !== COLON) return -1;
    i = skipSpace(text, i + 1);
    if (name === key) return i;
    const end = valueEnd(text, i);
    if (end < 0) return -1;
    i = skipSpace(text, end + 1);
    if (text.charCodeAt(i) !== COMMA) return -1;
    i++;
  }
}

/** Index of the last character of the JSON value starting at `i`, or -1. */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return stringEnd(text, i);
  if (c !== OPEN_BRACE && c !== OPEN_BRACKET) {
    // number, true, false, null: up to the next delimiter
    let j = i;
    while (j < text.length) {
      const d = text.charCodeAt(j);
      if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || d <= 0x20) break;
      j++;
    }
    return j > i ? j - 1 : -1;
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const d = text.charCodeAt(j);
    if (d === QUOTE) {
      j = stringEnd(text, j);
      if (j < 0) return -1;
    } else if (d === OPEN_BRACE || d === OPEN_BRACKET) {
      depth++;
    } else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) {
      if (--depth === 0) return j;
    }
  }
  return -1;
}

/** Index of the closing quote of the string starting at `i`, or -1. */
function stringEnd(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const d = text.charCodeAt(j);
    if (d === BACKSLASH) j++;
    else if (d === QUOTE) return j;
  }
  return -1;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && text.charCodeAt(i) <= 0x20) i++;
  return i;
}
