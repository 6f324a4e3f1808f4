// Listings cached in memory with a TTL, and single-flight: concurrent requests for the same
// key share one load (50 parallel `stat`s of a cold folder make one HTTP request).
// Failures are not cached, so a transient error is retried by the next caller.
// ttlMs 0 keeps nothing (every listing asks the server again; only concurrent callers share a
// load): lru-cache itself reads `ttl: 0` as "never expires".
import { LRUCache } from 'lru-cache';

export interface ListingCacheOptions {
  /** Milliseconds a listing stays fresh; 0: listings are not kept at all. */
  ttlMs: number;
  /** Number of listings kept at most. */
  maxEntries: number;
}

interface Boxed {
  value: unknown;
}

export class ListingCache {
  private readonly cache: LRUCache<string, Boxed>;
  private readonly keep: boolean;
  /** Loads under way; `stale` once an invalidation hit their key while they ran. */
  private readonly inFlight = new Map<string, { stale: boolean; promise: Promise<unknown> }>();
  loads = 0;

  constructor(options: ListingCacheOptions) {
    this.keep = options.ttlMs > 0;
    this.cache = new LRUCache<string, Boxed>({ max: options.maxEntries, ttl: Math.max(0, options.ttlMs), ttlAutopurge: false });
    // An expired listing is never served again (get() loads it anew), but lru-cache keeps it
    // until maxEntries newer keys push it out: a mount left running for days held every listing
    // it had ever read (a 100,000-file session's tree is tens of MB). Dropped once per TTL
    // instead (one pass over the keys).
    if (this.keep) setInterval(() => this.cache.purgeStale(), timerMs(options.ttlMs)).unref();
  }

  /** Listings held (fresh, or expired and not purged yet). */
  get size(): number {
    return this.cache.size;
  }

  get<T>(key: string, load: () => Promise<T>): Promise<T> {
    const hit = this.cache.get(key);
    if (hit) return Promise.resolve(hit.value as T);
    const pending = this.inFlight.get(key);
    if (pending && !pending.stale) return pending.promise as Promise<T>;
    this.loads++;
    const entry = { stale: false, promise: Promise.resolve() as Promise<unknown> };
    const promise = load().then(
      (value) => {
        // A write invalidated this key while the load was in flight: don't store what it read.
        if (!entry.stale) this.set(key, value);
        this.clearInFlight(key, promise);
        return value;
      },
      (err: unknown) => {
        this.clearInFlight(key, promise);
        throw err;
      },
    );
    entry.promise = promise;
    this.inFlight.set(key, entry);
    return promise;
  }

  /** The value if cached or being loaded, without starting a load. */
  pending<T>(key: string): Promise<T> | undefined {
    const hit = this.cache.get(key);
    if (hit) return Promise.resolve(hit.value as T);
    const loading = this.inFlight.get(key);
    return loading && !loading.stale ? (loading.promise as Promise<T>) : undefined;
  }

  /** The cached value without loading, if fresh. */
  peek<T>(key: string): T | undefined {
    return this.cache.get(key)?.value as T | undefined;
  }

  set<T>(key: string, value: T): void {
    if (this.keep) this.cache.set(key, { value });
  }

  /** Drop one key, or every key starting with a prefix; loads of those keys under way go stale. */
  invalidate(keyOrPrefix: string, prefix = false): void {
    const hit = (key: string): boolean => (prefix ? key.startsWith(keyOrPrefix) : key === keyOrPrefix);
    for (const [key, entry] of this.inFlight) if (hit(key)) entry.stale = true;
    if (!prefix) {
      this.cache.delete(keyOrPrefix);
      return;
    }
    for (const key of [...this.cache.keys()]) if (hit(key)) this.cache.delete(key);
  }

  /** Loads of `key` under way go stale (they may predate a change already applied to the cached value). */
  staleLoads(key: string): void {
    const entry = this.inFlight.get(key);
    if (entry) entry.stale = true;
  }

  clear(): void {
    for (const entry of this.inFlight.values()) entry.stale = true;
    this.cache.clear();
  }

  private clearInFlight(key: string, promise: Promise<unknown>): void {
    if (this.inFlight.get(key)?.promise === promise) this.inFlight.delete(key);
  }
}

/**
 * A TTL as a timer period: at least 100 ms, and at most a day (setInterval takes anything above
 * 2^31-1 ms, about 24.8 days, as 1 ms: a --ttl meant as "forever" would fire constantly).
 */
export function timerMs(ttlMs: number): number {
  return Math.min(Math.max(100, ttlMs), 86_400_000);
}
