// What `xnatfs mount` makes of its options, without mounting.
import { describe, expect, it } from 'vitest';
import { kernelCacheSeconds, parseMountArgs } from '../../src/cli/mount-command.js';

describe('xnatfs mount options', () => {
  it('--ttl 0 reuses nothing: no listing kept, kernel attribute and entry timeouts 0', () => {
    const s = parseMountArgs(['https://xnat.example.org', '/tmp/wt-b/mp', '--ttl', '0']);
    expect(s.stack.listingTtlMs).toBe(0);
    expect(kernelCacheSeconds(s.stack.listingTtlMs)).toBe(0);
  });

  it('the kernel keeps attributes no longer than the listings, and 60 s at most', () => {
    expect(kernelCacheSeconds(parseMountArgs(['https://x.org', '/tmp/wt-b/mp']).stack.listingTtlMs)).toBe(60);
    expect(kernelCacheSeconds(parseMountArgs(['https://x.org', '/tmp/wt-b/mp', '--ttl', '2.5']).stack.listingTtlMs)).toBe(2.5);
    expect(() => parseMountArgs(['https://x.org', '/tmp/wt-b/mp', '--ttl', '-1'])).toThrow(/--ttl/);
  });
});
