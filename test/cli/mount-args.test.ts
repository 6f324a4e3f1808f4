// What `xnatfs mount` makes of its arguments, without mounting. The URL is normalised once, so
// every spelling of one server shares its cache folder (and the uploads an earlier mount left
// unfinished).
import { describe, expect, it } from 'vitest';
import { kernelCacheSeconds, leftoverSpoolNote, parseMountArgs } from '../../src/cli/mount-command.js';
import { normalizeBaseUrl } from '../../src/xnat/client.js';

const parse = (url: string) => parseMountArgs([url, '/tmp/xnatfs-args/mp', '--cache-dir', '/tmp/xnatfs-args/cache']);

describe('mount URL normalisation', () => {
  it('gives equivalent URLs one cache folder', () => {
    const base = parse('http://127.0.0.1:18301');
    expect(base.url).toBe('http://127.0.0.1:18301');
    expect(base.urlNote).toBeUndefined();
    for (const u of ['http://127.0.0.1:18301/', 'http://127.0.0.1:18301//', 'http://127.0.0.1:18301/data', 'http://127.0.0.1:18301/data/', 'http://127.0.0.1:18301/REST', 'http://127.0.0.1:18301/data/archive/projects/P']) {
      const s = parse(u);
      expect(s.url, u).toBe('http://127.0.0.1:18301');
      expect(s.stack.cacheDir, u).toBe(base.stack.cacheDir);
    }
    expect(parse('http://127.0.0.1:18301/').urlNote).toBeUndefined();
  });

  it('says so when it drops a REST path, and keeps a context path', () => {
    const s = parse('https://xnat.example.org/xnat/data/');
    expect(s.url).toBe('https://xnat.example.org/xnat');
    expect(s.urlNote).toBe("using https://xnat.example.org/xnat: xnatfs adds XNAT's REST path itself, so /data was dropped from the URL");
    expect(normalizeBaseUrl('https://h/xnat/database').baseUrl).toBe('https://h/xnat/database');
    // A context path that happens to be called data or rest is kept.
    expect(normalizeBaseUrl('https://h/data/xnat').baseUrl).toBe('https://h/data/xnat');
    expect(normalizeBaseUrl('https://h/rest').baseUrl).toBe('https://h/rest');
    expect(normalizeBaseUrl('https://h/xnat/data/experiments/XNAT_E00001/scans').baseUrl).toBe('https://h/xnat');
  });

  it('takes a user from the URL, not into the cache folder name', () => {
    const s = parse('https://alice@xnat.example.org/');
    expect(s.client.user).toBe('alice');
    expect(s.stack.cacheDir).toBe(parse('https://xnat.example.org').stack.cacheDir);
    expect(parseMountArgs(['https://alice@xnat.example.org', '/tmp/xnatfs-args/mp', '--user', 'bob']).client.user).toBe('bob');
  });
});

describe('xnatfs mount options', () => {
  it('--ttl 0 reuses nothing: no listing kept, kernel attribute and entry timeouts 0', () => {
    const s = parseMountArgs(['https://xnat.example.org', '/tmp/xnatfs-args/mp', '--ttl', '0']);
    expect(s.stack.listingTtlMs).toBe(0);
    expect(kernelCacheSeconds(s.stack.listingTtlMs)).toBe(0);
  });

  it('the kernel keeps attributes no longer than the listings, and 60 s at most', () => {
    expect(kernelCacheSeconds(parseMountArgs(['https://x.org', '/tmp/xnatfs-args/mp']).stack.listingTtlMs)).toBe(60);
    expect(kernelCacheSeconds(parseMountArgs(['https://x.org', '/tmp/xnatfs-args/mp', '--ttl', '2.5']).stack.listingTtlMs)).toBe(2.5);
    expect(() => parseMountArgs(['https://x.org', '/tmp/xnatfs-args/mp', '--ttl', '-1'])).toThrow(/--ttl/);
  });
});

describe('spool files of a killed mount', () => {
  it('are said to be where they are (the killed mount\'s folder), not in the new mount\'s spool folder', () => {
    expect(leftoverSpoolNote(['/c/spool/111/spool-a-x.nii', '/c/spool/111/spool-b-y.nii', '/c/spool/222/spool-c-z.nii'])).toBe(
      '3 partly written files from an earlier mount that was killed were not uploaded and are kept in /c/spool/111, /c/spool/222; copy them again if you need them, then delete those folders (until then every mount says this)',
    );
  });
});
