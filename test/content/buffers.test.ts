import { describe, expect, it } from 'vitest';
import { standalone } from '../../src/content/buffers.js';

describe('standalone', () => {
  it('gives a small file memory of its own (not a slice of a shared 8 KiB slab or a network chunk), and keeps one that has it', () => {
    const pooled = Buffer.from('a 30-byte DICOM sidecar file.\n');
    expect(pooled.buffer.byteLength).toBeGreaterThan(pooled.length); // Node's pool, as zip members get
    const own = standalone(pooled);
    expect(own.equals(pooled)).toBe(true);
    expect(own.buffer.byteLength).toBe(own.length);
    expect(own.buffer).not.toBe(pooled.buffer);
    const chunk = Buffer.alloc(64 * 1024, 1);
    expect(standalone(chunk.subarray(100, 200)).buffer.byteLength).toBe(100);
    expect(standalone(own)).toBe(own);
  });
});
