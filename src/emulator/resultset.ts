// Writes XNAT's table dialect (XFTTable + JSON/XML/CSV/HTML representations).
//
// Row key order: XNAT serialises each row through a java.util.HashMap, so keys come out in
// bucket order. We reproduce that exactly (String.hashCode, HashMap's spread and 16/32/64 buckets)
// instead of shuffling at random; with the project columns this yields the key order of the real
// sample in xnat-api.md §1 (pi_firstname, secondary_ID, pi_lastname, name, description, ID, URI).
// Meta values live in a java.util.Hashtable, whose enumeration order we reproduce too.

export type Row = Record<string, string>;

export interface Table {
  columns: string[];
  rows: Row[];
  /** Meta entries (strings), e.g. totalRecords, title. */
  meta: Array<[string, string]>;
  /** Extra "Columns" block emitted before Result (file listings). */
  columnsBlock?: Array<{ key: string; serverRoot: string }>;
}

export type TableFormat = 'json' | 'xml' | 'csv' | 'html';

export function javaStringHash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(31, h) + s.charCodeAt(i)) | 0;
  return h;
}

/** Iteration order of a java.util.HashMap filled with `keys` in this order. */
export function javaHashMapOrder(keys: string[]): string[] {
  let n = 16;
  while (keys.length > n * 0.75) n *= 2;
  return keys
    .map((k, i) => {
      const h = javaStringHash(k);
      return { k, i, b: (h ^ (h >>> 16)) & (n - 1) };
    })
    .sort((a, b) => a.b - b.b || a.i - b.i)
    .map((x) => x.k);
}

/** Enumeration order of a java.util.Hashtable (capacity 11): high buckets first, newest first. */
export function javaHashtableOrder(keys: string[]): string[] {
  let n = 11;
  while (keys.length >= n * 0.75) n = n * 2 + 1;
  return keys
    .map((k, i) => ({ k, i, b: (javaStringHash(k) & 0x7fffffff) % n }))
    .sort((a, b) => b.b - a.b || b.i - a.i)
    .map((x) => x.k);
}

const orderCache = new Map<string, string[]>();
function rowOrder(columns: string[]): string[] {
  const key = columns.join('\u0000');
  let o = orderCache.get(key);
  if (!o) {
    o = javaHashMapOrder(columns);
    orderCache.set(key, o);
  }
  return o;
}

export function renderTable(t: Table, format: TableFormat): { body: string; contentType: string } {
  switch (format) {
    case 'xml':
      return { body: toXml(t), contentType: 'text/xml' };
    case 'csv':
      return { body: toCsv(t), contentType: 'text/csv' };
    case 'html':
      return { body: toHtml(t), contentType: 'text/html' };
    default:
      return { body: toJson(t), contentType: 'application/json' };
  }
}

function toJson(t: Table): string {
  const order = rowOrder(t.columns);
  const rows = t.rows.map((r) => '{' + order.map((k) => JSON.stringify(k) + ':' + JSON.stringify(r[k] ?? '')).join(',') + '}');
  let s = '{"ResultSet":{';
  if (t.columnsBlock) s += '"Columns":' + JSON.stringify(t.columnsBlock) + ',';
  s += '"Result":[' + rows.join(',') + ']';
  const metaMap = new Map(t.meta);
  for (const k of javaHashtableOrder([...metaMap.keys()])) s += ', ' + JSON.stringify(k) + ': ' + JSON.stringify(metaMap.get(k));
  return s + '}}';
}

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function toXml(t: Table): string {
  const metaMap = new Map(t.meta);
  const attrs = javaHashtableOrder([...metaMap.keys()])
    .map((k) => ` ${k}="${xmlEscape(metaMap.get(k) ?? '')}"`)
    .join('');
  let s = `<ResultSet${attrs}><results><columns>`;
  for (const c of t.columns) s += `<column>${xmlEscape(c)}</column>`;
  s += '</columns>\n<rows>';
  for (const r of t.rows) {
    s += '<row>' + t.columns.map((c) => `<cell>${xmlEscape(r[c] ?? '')}</cell>`).join('') + '</row>\n';
  }
  return s + '</rows></results></ResultSet>';
}

/** commons-lang escapeCsv: quote only when the value holds a comma, quote, CR or LF. */
export function escapeCsv(v: string): string {
  return /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
}

function toCsv(t: Table): string {
  const lines = [t.columns.map(escapeCsv).join(',')];
  for (const r of t.rows) lines.push(t.columns.map((c) => escapeCsv(r[c] ?? '')).join(','));
  return lines.join('\n') + '\n';
}

function toHtml(t: Table): string {
  let s = '<html><body><table><tr>' + t.columns.map((c) => `<th>${xmlEscape(c)}</th>`).join('') + '</tr>\n';
  for (const r of t.rows) s += '<tr>' + t.columns.map((c) => `<td>${xmlEscape(r[c] ?? '')}</td>`).join('') + '</tr>\n';
  return s + '</table></body></html>';
}

/** Apply `columns=`, `sortBy=`/`sortOrder=` in place; `columns` only where the caller allows it. */
export function applyTableParams(t: Table, q: URLSearchParams, opts: { allowColumns: boolean; extraColumns?: string[] }): Table {
  const sortBy = q.get('sortBy');
  if (sortBy) {
    const keys = sortBy.split(',').filter(Boolean);
    const desc = (q.get('sortOrder') ?? '').toUpperCase() === 'DESC';
    t.rows.sort((a, b) => {
      for (const k of keys) {
        const c = compareCells(a[k] ?? '', b[k] ?? '');
        if (c) return desc ? -c : c;
      }
      return 0;
    });
  }
  const cols = q.get('columns');
  if (opts.allowColumns && cols) {
    const wanted = cols.split(',').map((c) => c.trim()).filter(Boolean);
    const available = new Set([...t.columns, ...(opts.extraColumns ?? [])]);
    const out: string[] = [];
    for (const c of wanted) if (available.has(c) && !out.includes(c)) out.push(c);
    for (const must of ['ID', 'URI']) if (t.columns.includes(must) && !out.includes(must)) out.push(must);
    t.columns = out;
  }
  return t;
}

function compareCells(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (a !== '' && b !== '' && Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}
