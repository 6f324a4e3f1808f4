import { describe, expect, it } from 'vitest';
import { parseResultSet, type Row } from '../../src/xnat/resultset.js';
import { parseRows } from '../../src/xnat/resultset-slices.js';

const ctx = { baseUrl: 'http://x', what: 'GET /data/x' };
const id = (r: Row): Row => r;

/** Rows with names that would trip a naive splitter: braces, brackets, commas, quotes, escapes. */
function rows(n: number): Array<Record<string, unknown>> {
  const awkward = ['a},{b', 'x]y[z', 'q"uote', 'back\\slash', 'ünï 日本', 'tab\tnew\nline', '{"nested":1}'];
  return Array.from({ length: n }, (_, i) => ({
    Name: `${awkward[i % awkward.length]}-${i}.dcm`,
    Size: String(1000 + i),
    URI: `/data/experiments/E/scans/${i % 7}/resources/${100 + (i % 7)}/files/${i}.dcm`,
    ...(i % 5 === 0 ? { extra: { deep: [1, { x: '}' }] }, n: 12.5, ok: true, none: null } : {}),
  }));
}

/** How many event-loop turns other work got while `fn` ran. */
async function countingTurns<T>(fn: () => Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let ticking = true;
  const tick = (): void => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const value = await fn();
  ticking = false;
  return { value, turns };
}

describe('parseRows (large listings in slices)', () => {
  it.each([
    ['Result first', (r: unknown[]) => JSON.stringify({ ResultSet: { Result: r, totalRecords: String(r.length) } })],
    ['meta and Columns first, spaced and indented', (r: unknown[]) => JSON.stringify({ ResultSet: { Columns: [{ key: 'URI', serverRoot: '' }], title: 'Files', Result: r } }, null, 2)],
    ['XNAT spacing in the meta', (r: unknown[]) => `{"ResultSet":{"Result":${JSON.stringify(r)}, "totalRecords": "${r.length}"}}`],
  ])('gives exactly the rows of one JSON.parse (%s)', async (_what, render) => {
    const body = render(rows(3000));
    const { value: sliced, turns } = await countingTurns(() => parseRows(body, ctx, id, 4096));
    expect(sliced).toEqual(parseResultSet(body, ctx));
    expect(turns).toBeGreaterThan(10); // it did go slice by slice
  });

  it('lets the event loop run between slices', async () => {
    const body = JSON.stringify({ ResultSet: { Result: rows(20_000) } });
    const { value: parsed, turns } = await countingTurns(() => parseRows(body, ctx, (r) => r['Size'], 64 * 1024));
    expect(parsed).toHaveLength(20_000);
    expect(turns).toBeGreaterThan(Math.floor(body.length / (64 * 1024)) - 2);
  });

  it('fails like the one-piece parser on bodies it cannot follow', async () => {
    const good = JSON.stringify({ ResultSet: { Result: rows(2000) } });
    const cases = [
      good.slice(0, good.length - 3), // cut short after the rows
      good.replace('"Result":[{', '"Result":[7,{'), // a row that is not an object
      `<html><body>${'x'.repeat(20_000)}</body></html>`,
      JSON.stringify({ Other: { Result: rows(2000) } }),
    ];
    for (const body of cases) {
      const sync = (() => {
        try {
          return parseResultSet(body, ctx);
        } catch (err) {
          return err as Error;
        }
      })();
      const sliced = await parseRows(body, ctx, id, 4096).catch((err: unknown) => err as Error);
      if (sync instanceof Error) expect((sliced as Error).message).toBe(sync.message);
      else expect(sliced).toEqual(sync);
    }
    // a Result of null or missing: no rows, as in one piece
    const empty = JSON.stringify({ ResultSet: { Result: null, pad: 'x'.repeat(20_000) } });
    expect(await parseRows(empty, ctx, id, 4096)).toEqual([]);
  });
});
