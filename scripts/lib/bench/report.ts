// Benchmark results: per-run times → min/median, ratios, the text table, a markdown table and an
// SVG chart (hand-written, no dependencies).

export interface Row {
  id: string;
  title: string;
  /** What the "mount" column ran, and the baseline's. */
  mountLabel: string;
  baselineLabel: string;
  /** Milliseconds per run. */
  mount: number[];
  baseline: number[];
  /** Bytes moved per run, for rows compared by throughput. */
  bytes?: number;
  /** 'time': ratio = mount time / baseline time (lower is better); 'throughput': mount MB/s ÷ baseline MB/s (higher is better). */
  ratioKind: 'time' | 'throughput';
  goal?: { op: '<=' | '>='; value: number };
  /** HTTP requests the mount made per run. */
  requests?: number[];
  /** Failures seen on the mount side (the run is still timed; the row is marked ERROR). */
  errors?: string[];
  /** Free-form extras (phases, request breakdowns, sanity checks). */
  extra?: Record<string, unknown>;
}

export const min = (xs: number[]): number => (xs.length ? Math.min(...xs) : NaN);
export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Ratio of run i (mount against baseline of the same repetition). */
export function ratios(r: Row): number[] {
  const n = Math.min(r.mount.length, r.baseline.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(r.ratioKind === 'time' ? r.mount[i]! / r.baseline[i]! : r.baseline[i]! / r.mount[i]!);
  return out;
}

export type Verdict = 'PASS' | 'FAIL' | 'info' | 'ERROR';
/** Judged on the median ratio; ERROR when a run on the mount failed or returned wrong data. */
export function verdict(r: Row): Verdict {
  if (r.errors?.length) return 'ERROR';
  const rs = ratios(r);
  if (!r.goal || !rs.length) return 'info';
  const m = median(rs);
  return (r.goal.op === '<=' ? m <= r.goal.value : m >= r.goal.value) ? 'PASS' : 'FAIL';
}

const secs = (ms: number): string => (Number.isNaN(ms) ? '—' : ms >= 100_000 ? `${(ms / 1000).toFixed(0)}` : ms >= 10_000 ? `${(ms / 1000).toFixed(1)}` : (ms / 1000).toFixed(2));
const rat = (x: number): string => (Number.isNaN(x) ? '—' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const mbps = (bytes: number, ms: number): string => (Number.isNaN(ms) ? '—' : `${(bytes / 1e6 / (ms / 1000)).toFixed(0)}`);

export interface Cells {
  id: string;
  title: string;
  mount: string;
  baseline: string;
  ratio: string;
  goal: string;
  result: string;
  requests: string;
  rate: string;
}

export function cells(r: Row): Cells {
  const rs = ratios(r);
  const pair = (xs: number[], f: (x: number) => string): string => (xs.length ? `${f(min(xs))} / ${f(median(xs))}` : '—');
  // For throughput rows the better run is the shortest time but the *highest* ratio; still, min/median are plain statistics.
  return {
    id: r.id,
    title: r.title,
    mount: pair(r.mount, secs),
    baseline: pair(r.baseline, secs),
    ratio: pair(rs, rat),
    goal: r.goal ? `${r.goal.op === '<=' ? '≤' : '≥'} ${r.goal.value}` : '—',
    result: verdict(r),
    requests: r.requests?.length ? String(median(r.requests)) : '',
    rate: r.bytes ? `${mbps(r.bytes, median(r.mount))} | ${r.baseline.length ? mbps(r.bytes, median(r.baseline)) : '—'}` : '',
  };
}

const HEAD: Cells = { id: 'id', title: 'target (mount vs baseline)', mount: 'mount s min/med', baseline: 'baseline s min/med', ratio: 'ratio min/med', goal: 'goal', result: 'result', requests: 'req', rate: 'MB/s m|b (med)' };
const COLS: Array<keyof Cells> = ['id', 'title', 'mount', 'baseline', 'ratio', 'goal', 'result', 'requests', 'rate'];

export function textTable(rows: Row[]): string {
  const all = [HEAD, ...rows.map(cells)];
  const width = (k: keyof Cells): number => Math.max(...all.map((c) => [...c[k]].length));
  const pad = (s: string, n: number): string => s + ' '.repeat(Math.max(0, n - [...s].length));
  const line = (c: Cells): string => COLS.map((k) => pad(c[k], width(k))).join('  ').trimEnd();
  const sep = COLS.map((k) => '-'.repeat(width(k))).join('  ');
  return [line(HEAD), sep, ...all.slice(1).map(line)].join('\n');
}

export function markdownTable(rows: Row[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const out = [`| ${COLS.map((k) => esc(HEAD[k])).join(' | ')} |`, `|${COLS.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const c = cells(r);
    out.push(`| ${COLS.map((k) => esc(c[k])).join(' | ')} |`);
  }
  return out.join('\n');
}

const xmlEsc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * Horizontal bars on a log scale, each from 1.0 (parity with the baseline) to the median ratio; a
 * dot marks the min, a red tick the goal. Every row is oriented so that "right = mount better":
 * time ratios are drawn as 1/ratio (baseline time ÷ mount time), throughput ratios as they are.
 */
export function svgChart(rows: Row[], subtitle: string): string {
  const data = rows
    .map((r) => ({ r, rs: ratios(r) }))
    .filter((d) => d.rs.length)
    .map(({ r, rs }) => {
      const orient = (x: number): number => (r.ratioKind === 'time' ? 1 / x : x);
      const vals = rs.map(orient);
      const goal = r.goal ? orient(r.goal.value) : undefined;
      return { r, med: median(vals), raw: median(rs), lo: Math.min(...vals), hi: Math.max(...vals), goal, v: verdict(r) };
    });
  const W = 1000;
  const left = 370;
  const right = 175;
  const rowH = 34;
  const top = 70;
  const H = top + data.length * rowH + 70;
  const all = data.flatMap((d) => [d.lo, d.hi, d.goal ?? 1, 1]);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(1e-3, Math.min(...all)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))));
  const x = (v: number): number => left + ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (W - left - right);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="13">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">xnatfs cold mount vs baseline (right of 1× = mount faster)</text>`);
  parts.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#555">${xmlEsc(subtitle)}</text>`);
  for (let d = Math.log10(lo); d <= Math.log10(hi) + 1e-9; d++) {
    for (const m of [1, 2, 5]) {
      const v = Math.pow(10, d) * m;
      if (v > hi * 1.0001 || v < lo) continue;
      const xx = x(v).toFixed(1);
      parts.push(`<line x1="${xx}" y1="${top - 8}" x2="${xx}" y2="${top + data.length * rowH}" stroke="${m === 1 ? '#bbb' : '#e5e5e5'}"/>`);
      parts.push(`<text x="${xx}" y="${top + data.length * rowH + 18}" text-anchor="middle" fill="#555">${v >= 1 ? `${v}×` : `${v.toPrecision(1)}×`}</text>`);
    }
  }
  const one = x(1).toFixed(1);
  parts.push(`<line x1="${one}" y1="${top - 12}" x2="${one}" y2="${top + data.length * rowH}" stroke="#333" stroke-width="1.5"/>`);
  data.forEach((d, i) => {
    const y = top + i * rowH;
    const color = d.v === 'PASS' ? '#3a9d5d' : d.v === 'FAIL' || d.v === 'ERROR' ? '#d9534f' : '#6c8ebf';
    const x0 = Math.min(x(1), x(d.med));
    const x1 = Math.max(x(1), x(d.med));
    const label = `${d.r.id}  ${d.r.title}`;
    parts.push(`<text x="${left - 8}" y="${y + 20}" text-anchor="end">${xmlEsc(label.length > 52 ? label.slice(0, 51) + '…' : label)}</text>`);
    parts.push(`<rect x="${x0.toFixed(1)}" y="${y + 7}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${rowH - 14}" fill="${color}" opacity="0.85"/>`);
    parts.push(`<line x1="${x(d.lo).toFixed(1)}" y1="${y + rowH / 2}" x2="${x(d.hi).toFixed(1)}" y2="${y + rowH / 2}" stroke="#222"/>`);
    if (d.goal !== undefined) parts.push(`<line x1="${x(d.goal).toFixed(1)}" y1="${y + 3}" x2="${x(d.goal).toFixed(1)}" y2="${y + rowH - 3}" stroke="#c00" stroke-width="3"/>`);
    // the table's ratio, in the table's terms
    const txt = `${d.r.ratioKind === 'time' ? 'time' : 'MB/s'} ×${rat(d.raw)}${d.v !== 'info' ? ' ' + d.v : ''}`;
    const tx = Math.max(x1, x(d.hi), d.goal !== undefined ? x(d.goal) : 0) + 6;
    parts.push(`<text x="${tx.toFixed(1)}" y="${y + 21}" font-weight="bold" fill="${color}">${txt}</text>`);
  });
  parts.push(`<text x="${W / 2}" y="${H - 26}" text-anchor="middle" fill="#555" font-size="11">bar: median over runs, drawn as mount speed ÷ baseline speed (log scale; for time rows baseline time ÷ mount time);</text>`);
  parts.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle" fill="#555" font-size="11">black line: range over runs; red tick: goal; label: the table's ratio (time: mount ÷ baseline, MB/s: mount ÷ baseline)</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
