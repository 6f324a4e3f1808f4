import { describe, expect, it } from 'vitest';
import {
  encodeFilePath,
  filesPath,
  ownerPath,
  relativePathFromUri,
  requestPathFromUri,
  resourcePath,
  scanIdFromUri,
} from '../../src/xnat/paths.js';

/** java.net.URLDecoder.decode: form decoding, "+" is a space. */
function javaUrlDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}
/** What xnat-web 1.7/1.8 does: match raw, else URLDecoder-decoded. */
function resolvesOld(sent: string, stored: string): boolean {
  return sent === stored || javaUrlDecode(sent) === stored;
}
/** Newer FileList: decode first when "%2B" or "%20" appears, then the same lookup. */
function resolvesNew(sent: string, stored: string): boolean {
  const p = sent.includes('%2B') || sent.includes('%20') ? javaUrlDecode(sent) : sent;
  if (p === stored) return true;
  try {
    return javaUrlDecode(p) === stored;
  } catch {
    return false;
  }
}

const AWKWARD = [
  'plain.dcm',
  'a b.dcm',
  'a+b.dcm',
  'a b+c.dcm',
  'hash#1.txt',
  'pct%20literal.txt',
  '100%.txt',
  'q?x=1.txt',
  'semi;colon.txt',
  'Zürich Ärger 日本.nii',
  "it's (1)!*.txt",
  'sub dir/deeper+x/file #2.dcm',
];

describe('file path encoding', () => {
  it.each(AWKWARD)('%s resolves on old and new XNAT FileList', (name) => {
    const sent = encodeFilePath(name);
    expect(sent).not.toMatch(/[ #?+;]/);
    expect(resolvesOld(sent, name)).toBe(true);
    expect(resolvesNew(sent, name)).toBe(true);
  });

  it('keeps folder slashes and a trailing slash, refuses empty and dot segments', () => {
    expect(encodeFilePath('sub/folder/')).toBe('sub/folder/');
    expect(() => encodeFilePath('a//b')).toThrow(RangeError);
    expect(() => encodeFilePath('../etc')).toThrow(RangeError);
  });
});

describe('owner paths', () => {
  it('uses accession ids where XNAT allows, project paths for subjects', () => {
    expect(ownerPath({ level: 'project', project: 'P 1' })).toBe('/data/projects/P%201');
    expect(ownerPath({ level: 'subject', project: 'P', subject: 'XNAT_S1' })).toBe('/data/projects/P/subjects/XNAT_S1');
    expect(ownerPath({ level: 'experiment', project: 'P', experiment: 'XNAT_E1' })).toBe('/data/experiments/XNAT_E1');
    expect(ownerPath({ level: 'scan', project: 'P', experiment: 'E', scan: '4' })).toBe('/data/experiments/E/scans/4');
    expect(ownerPath({ level: 'scan', project: 'P', experiment: 'E', scan: '1,2' })).toBe('/data/experiments/E/scans/1%5BCOMMA%5D2');
    expect(ownerPath({ level: 'assessor', project: 'P', experiment: 'E', assessor: 'A' })).toBe('/data/experiments/E/assessors/A');
    expect(resourcePath({ level: 'experiment', project: 'P', experiment: 'E' }, 'MY RES')).toBe('/data/experiments/E/resources/MY%20RES');
    expect(filesPath({ level: 'scan', project: 'P', experiment: 'E', scan: '4' }, 'DICOM', 'a b/c+d.dcm')).toBe(
      '/data/experiments/E/scans/4/resources/DICOM/files/a%20b/c%2Bd.dcm',
    );
  });
});

describe('paths from listed URIs', () => {
  it('derives the relative path after /resources/<id>/files/', () => {
    expect(relativePathFromUri('/data/experiments/E/scans/1/resources/42/files/sub/folder/3.dcm')).toBe('sub/folder/3.dcm');
    expect(relativePathFromUri('/experiments/E/scans/1/resources/42/files/x')).toBe('x');
    expect(relativePathFromUri('/data/projects/P/resources/7/files/a b#c%20.txt')).toBe('a b#c%20.txt');
    // A path that itself contains /resources/x/files/ keeps it: the first match is the real one.
    expect(relativePathFromUri('/data/projects/P/resources/7/files/r/resources/q/files/z')).toBe('r/resources/q/files/z');
    // A project named "resources" does not confuse it.
    expect(relativePathFromUri('/data/projects/resources/resources/7/files/z')).toBe('z');
    expect(relativePathFromUri('/data/projects/P')).toBeNull();
  });

  it('finds the scan id', () => {
    expect(scanIdFromUri('/data/experiments/E/scans/4/resources/42/files/x.dcm')).toBe('4');
    expect(scanIdFromUri('/data/projects/P/subjects/S/experiments/E/scans/T1w_2/resources/9/files/x')).toBe('T1w_2');
    expect(scanIdFromUri('/data/experiments/E/resources/42/files/x')).toBeNull();
  });

  it('turns a listed URI into an encoded request path, adding /data and dropping a context path', () => {
    expect(requestPathFromUri('/data/experiments/E/scans/4/resources/42/files/a b/c#d.dcm', '')).toBe(
      '/data/experiments/E/scans/4/resources/42/files/a%20b/c%23d.dcm',
    );
    expect(requestPathFromUri('/experiments/E/resources/42/files/x+y', '/xnat')).toBe('/data/experiments/E/resources/42/files/x%2By');
    expect(requestPathFromUri('/xnat/data/experiments/E/resources/42/files/x', '/xnat')).toBe('/data/experiments/E/resources/42/files/x');
  });
});
