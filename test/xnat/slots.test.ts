// The two-class connection cap: a prefetch promoted while it waits for a connection (a program
// opened its file) is served with the requests programs wait for, ahead of other prefetches.
import { describe, expect, it } from 'vitest';
import { Slots, Standing } from '../../src/xnat/slots.js';

const wait = { deadlineMs: 0, onDeadline: () => new Error('deadline') };

describe('Slots', () => {
  it('serves a promoted background waiter before the prefetches queued ahead of it', async () => {
    const slots = new Slots(2, 1);
    expect(slots.acquire({ background: false, ...wait })).toBeUndefined();
    expect(slots.acquire({ background: false, ...wait })).toBeUndefined();
    const order: string[] = [];
    const standing = new Standing();
    const queued = [
      ['a', slots.acquire({ background: true, ...wait })],
      ['b', slots.acquire({ background: true, ...wait })],
      ['c', slots.acquire({ background: true, standing, ...wait })],
      ['d', slots.acquire({ background: false, ...wait })],
    ] as const;
    for (const [name, p] of queued) void p!.then(() => order.push(name));
    standing.promote();
    expect(standing.background).toBe(false);
    standing.promote(); // twice is harmless
    // Foreground first (d, then c, promoted behind it); prefetch only while a slot is left for reads.
    for (let i = 0; i < 6; i++) {
      slots.release();
      await new Promise((r) => setImmediate(r));
    }
    expect(order).toEqual(['d', 'c', 'a', 'b']);
  });

  it('a promoted waiter is not dropped with the prefetches when XNAT stops answering', async () => {
    const slots = new Slots(1, 1);
    expect(slots.acquire({ background: false, ...wait })).toBeUndefined();
    const standing = new Standing();
    const kept = slots.acquire({ background: true, standing, ...wait })!;
    const dropped = slots.acquire({ background: true, ...wait })!.then(() => 'granted', (e: Error) => e.message);
    standing.promote();
    expect(slots.dropBackground(() => new Error('silent'))).toBe(1);
    expect(await dropped).toBe('silent');
    slots.release();
    await kept;
    expect(slots.pending).toBe(0);
  });

  it('promotion after the grant changes nothing', async () => {
    const slots = new Slots(1, 1);
    const standing = new Standing();
    expect(slots.acquire({ background: true, standing, ...wait })).toBeUndefined();
    standing.promote();
    expect(slots.pending).toBe(0);
    slots.release();
    await slots.idle();
  });
});
