// Listings cached in memory with a TTL, and single-flight: concurrent requests for the same
// key share one load (50 parallel `stat`s of a cold folder make one HTTP request).
// Failures are not cached, so a transient error is retried by the next caller.
import { LRUCache } from 'lru-cache';

export interface ListingCacheOptions {
  /** Milliseconds a listing stays fresh. */
  ttlMs: number;
  /** Number of listings kept at most. */
  maxEntries: number;
}

interface Boxed {
  value: unknown;
}

export class ListingCache {
  private readonly cache: LRUCache<string, Boxed>;
  private readonly inFlight = new Map<string, { generation: number; promise: Promise<unknown> }>();
  private generation = 0;
  loads = 0;

  constructor(options: ListingCacheOptions) {
    this.cache = new LRUCache<string, Boxed>({ max: options.maxEntries, ttl: options.ttlMs, ttlAutopurge: false });
  }

  get<T>(key: string, load: () => Promise<T>): Promise<T> {
    const hit = this.cache.get(key);
    if (hit) return Promise.resolve(hit.value as T);
    const pending = this.inFlight.get(key);
    if (pending && pending.generation === this.generation) return pending.promise as Promise<T>;
    const generation = this.generation;
    this.loads++;
    const promise = load().then(
      (value) => {
        // A write may have invalidated this key while the load was in flight: don't store stale data.
        if (generation === this.generation) this.cache.set(key, { value });
        this.clearInFlight(key, promise);
        return value;
      },
      (err: unknown) => {
        this.clearInFlight(key, promise);
        throw err;
      },
    );
    this.inFlight.set(key, { generation, promise });
    return promise;
  }

  /** The cached value without loading, if fresh. */
  peek<T>(key: string): T | undefined {
    return this.cache.get(key)?.value as T | undefined;
  }

  set<T>(key: string, value: T): void {
    this.cache.set(key, { value });
  }

  /** Drop one key, or every key starting with a prefix. */
  invalidate(keyOrPrefix: string, prefix = false): void {
    this.generation++;
    if (!prefix) {
      this.cache.delete(keyOrPrefix);
      return;
    }
    for (const key of [...this.cache.keys()]) if (key.startsWith(keyOrPrefix)) this.cache.delete(key);
  }

  clear(): void {
    this.generation++;
    this.cache.clear();
  }

  private clearInFlight(key: string, promise: Promise<unknown>): void {
    if (this.inFlight.get(key)?.promise === promise) this.inFlight.delete(key);
  }
}
