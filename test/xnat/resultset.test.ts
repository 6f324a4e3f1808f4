import { describe, expect, it } from 'vitest';
import { parseResultSet } from '../../src/xnat/resultset.js';
import { toExperiment, toFileEntry, toProject, toResource, toScanFileEntry } from '../../src/xnat/records.js';
import { XnatError } from '../../src/xnat/types.js';

const ctx = { baseUrl: 'https://x.example', what: 'GET /data/projects' };

describe('parseResultSet', () => {
  it('reads the real projects answer (all strings, meta after the rows)', () => {
    const body =
      '{"ResultSet":{"Result":[{"pi_firstname":"","secondary_ID":"ForeFront","pi_lastname":"","name":"ForeFront Ageing","description":"","ID":"FF","URI":"/data/projects/FF"}], "totalRecords": "1"}}';
    const rows = parseResultSet(body, ctx);
    expect(rows.map(toProject)).toEqual([{ id: 'FF', name: 'ForeFront Ageing', secondaryId: 'ForeFront', description: '' }]);
  });

  it('tolerates shuffled keys, extra columns, missing totalRecords and Columns meta', () => {
    const body = JSON.stringify({
      ResultSet: {
        Columns: [{ key: 'URI', serverRoot: '' }],
        title: 'Files',
        Result: [
          {
            digest: 'abc',
            cat_ID: '42',
            extra_col: 'whatever',
            URI: '/data/experiments/E1/scans/4/resources/42/files/sub/a b.dcm',
            collection: 'DICOM',
            Size: '1048',
            Name: 'a b.dcm',
          },
        ],
      },
    });
    const [f] = parseResultSet(body, ctx).map(toFileEntry);
    expect(f).toEqual({
      path: 'sub/a b.dcm',
      size: 1048,
      digest: 'abc',
      uri: '/data/experiments/E1/scans/4/resources/42/files/sub/a b.dcm',
      resourceLabel: 'DICOM',
      resourceId: '42',
    });
  });

  it('coerces numbers where strings are expected and "" to null for numeric fields', () => {
    const rows = parseResultSet(
      '{"ResultSet":{"Result":[{"xnat_abstractresource_id":17,"label":"DICOM","file_count":"","file_size":"123","format":null,"content":"RAW"}]}}',
      ctx,
    );
    expect(rows.map(toResource)).toEqual([{ id: '17', label: 'DICOM', format: '', content: 'RAW', fileCount: null, fileSize: 123 }]);
  });

  it('fills subjectId when the listing has subject_ID, "" otherwise; case-insensitive fallback', () => {
    const rows = parseResultSet(
      '{"ResultSet":{"Result":[{"id":"XNAT_E1","label":"MR1","subject_ID":"XNAT_S1"},{"ID":"XNAT_E2","label":"MR2"}]}}',
      ctx,
    );
    const ex = rows.map(toExperiment);
    expect(ex[0]).toMatchObject({ id: 'XNAT_E1', subjectId: 'XNAT_S1', date: '' });
    expect(ex[1]).toMatchObject({ id: 'XNAT_E2', subjectId: '' });
  });

  it('gives scan ids for ALL-scans listings, with or without /data', () => {
    const rows = parseResultSet(
      JSON.stringify({
        ResultSet: {
          Result: [
            { URI: '/data/experiments/E/scans/4/resources/42/files/x.dcm', Size: '1' },
            { URI: '/experiments/E/scans/10-b/resources/DICOM/files/d/y.dcm', Size: '2' },
          ],
        },
      }),
      ctx,
    );
    expect(rows.map(toScanFileEntry).map((f) => [f.scan, f.path])).toEqual([
      ['4', 'x.dcm'],
      ['10-b', 'd/y.dcm'],
    ]);
  });

  it('treats a missing Result as empty', () => {
    expect(parseResultSet('{"ResultSet":{"totalRecords":"0"}}', ctx)).toEqual([]);
  });

  it('rejects an HTML page with a protocol error carrying its message', () => {
    const html = '<html><head><title>XNAT Login</title></head><body><form id="login_form"></form></body></html>';
    let err: unknown;
    try {
      parseResultSet(html, ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(XnatError);
    expect((err as XnatError).kind).toBe('protocol');
    expect((err as XnatError).message).toContain('XNAT Login');
    expect((err as XnatError).message).not.toContain('\n');
  });

  it('rejects non-JSON and JSON of the wrong shape', () => {
    expect(() => parseResultSet('not json', ctx)).toThrow(/not JSON/);
    expect(() => parseResultSet('{"items":[]}', ctx)).toThrow(/without a ResultSet/);
    expect(() => parseResultSet('{"ResultSet":{"Result":{}}}', ctx)).toThrow(/not a list/);
  });

  it('parses a 10,000-row file listing quickly', () => {
    const result = [];
    for (let i = 0; i < 10_000; i++) {
      result.push({
        Name: `${i}.dcm`,
        Size: String(100_000 + i),
        URI: `/data/experiments/XNAT_E00001/scans/${i % 20}/resources/${1000 + (i % 20)}/files/sub folder/${i}.dcm`,
        collection: 'DICOM',
        file_tags: '',
        file_format: 'DICOM',
        file_content: 'RAW',
        cat_ID: String(1000 + (i % 20)),
        digest: 'd41d8cd98f00b204e9800998ecf8427e',
      });
    }
    const body = JSON.stringify({ ResultSet: { Result: result, title: 'Files' } });
    const t0 = performance.now();
    const entries = parseResultSet(body, ctx).map(toScanFileEntry);
    const ms = performance.now() - t0;
    console.log(`parsed ${entries.length} rows (${(body.length / 1e6).toFixed(1)} MB) in ${ms.toFixed(1)} ms`);
    expect(entries).toHaveLength(10_000);
    expect(entries[9_999]).toMatchObject({ path: 'sub folder/9999.dcm', scan: '19', size: 109_999 });
    expect(ms).toBeLessThan(1000);
  });
});
