// The in-memory listing cache: expired listings do not stay in memory.
import { describe, expect, it } from 'vitest';
import { ListingCache, timerMs } from '../../src/catalogue/listing-cache.js';

describe('ListingCache', () => {
  it('drops expired listings without waiting for newer keys to push them out (a long-running mount kept every listing it had read)', async () => {
    const cache = new ListingCache({ ttlMs: 150, maxEntries: 20_000 });
    for (let i = 0; i < 50; i++) await cache.get(`files:r${i}`, async () => [`listing ${i}`]);
    expect(cache.size).toBe(50);
    expect(cache.peek('files:r0')).toEqual(['listing 0']);
    await new Promise((r) => setTimeout(r, 600));
    expect(cache.size).toBe(0);
    // and a fresh one is kept again
    await cache.get('files:r0', async () => ['again']);
    expect(cache.size).toBe(1);
  });

  it('turns a TTL into a timer period setInterval takes as meant (above 2^31-1 ms it fires every 1 ms)', () => {
    expect(timerMs(2_000)).toBe(2_000);
    expect(timerMs(600_000)).toBe(600_000);
    expect(timerMs(10)).toBe(100);
    expect(timerMs(3_000_000_000)).toBe(86_400_000);
  });
});
