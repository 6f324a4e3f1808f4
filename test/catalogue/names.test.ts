import { describe, expect, it } from 'vitest';
import { escapeName, scanFolderName, unescapeName } from '../../src/catalogue/names.js';

describe('escapeName / unescapeName', () => {
  const names = ['plain.dcm', 'notes with spaces.txt', 'hash#1.txt', '100%.txt', 'a+b.txt', 'ünïcode-日本.txt',
    'a/b', '%2F', '%25', '100%25', '.', '..', '', '%2E', '%2E%2E', '...', 'x%zz', '%', 'report%20final.txt', 'x%41y', 'a%2fb', '%00', 'a%2Eb'];
  it.each(names)('round-trips %j', (name) => {
    const escaped = escapeName(name);
    expect(escaped).not.toContain('/');
    expect(['.', '..', '']).not.toContain(escaped);
    expect(unescapeName(escaped)).toBe(name);
  });
  it('leaves ordinary awkward names as they are', () => {
    for (const n of ['notes with spaces.txt', 'hash#1.txt', '100%.txt', 'a+b.txt', 'ünïcode-日本.txt']) expect(escapeName(n)).toBe(n);
  });
  it('shows a name with other %XX sequences as it is, so a file copied in keeps its name', () => {
    for (const n of ['report%20final.txt', 'x%41y.txt', '50%OFF', '%7E']) {
      expect(escapeName(n)).toBe(n);
      expect(unescapeName(n)).toBe(n);
    }
  });
  it('gives distinct escapes to distinct names', () => {
    const escaped = new Set(names.map(escapeName));
    expect(escaped.size).toBe(names.length);
  });
});

describe('scanFolderName', () => {
  it('names scans as XNAT zips do', () => {
    expect(scanFolderName('4', 'Ax 3D T1')).toBe('4-Ax_3D_T1');
    expect(scanFolderName('6', 'fMRI rest (run 1)')).toBe('6-fMRI_rest__run_1_');
    expect(scanFolderName('7', 'T1-weighted/MPRAGE')).toBe('7-T1_weighted_MPRAGE');
    expect(scanFolderName('12', '')).toBe('12');
    expect(scanFolderName('3', 'Über')).toBe('3-_ber');
  });
});
