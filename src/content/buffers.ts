// Buffers kept for long (the memory cache of small files) must own their memory.

/**
 * `b` in memory of its own, for keeping. Node puts buffers under 4 KiB into shared 8 KiB slabs
 * (as a view into a network chunk shares that chunk): kept in the memory cache, a 30-byte file
 * held its whole slab while the cache's bound counted 30 bytes, so many tiny files could hold
 * far more than it.
 */
export function standalone(b: Buffer): Buffer {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return b;
  const own = Buffer.allocUnsafeSlow(b.length);
  b.copy(own);
  return own;
}
