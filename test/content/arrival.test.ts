import { describe, expect, it } from 'vitest';
import { Arrival } from '../../src/content/arrival.js';

describe('Arrival', () => {
  it('gives the value to a waiter that came before or after it arrived', async () => {
    const early = new Arrival<string>();
    const waiting = early.wait();
    expect(early.settled).toBe(false);
    early.deliver('a');
    expect(early.settled).toBe(true);
    await expect(waiting).resolves.toBe('a');

    const late = new Arrival<string>();
    late.deliver('b');
    await expect(late.wait()).resolves.toBe('b');
  });

  it('rejects waiters before and after a failure, and keeps the first outcome', async () => {
    const early = new Arrival<string>();
    const waiting = early.wait();
    early.fail(new Error('not in the zip'));
    early.deliver('ignored');
    await expect(waiting).rejects.toThrow('not in the zip');
    await expect(early.wait()).rejects.toThrow('not in the zip');

    const late = new Arrival<string>();
    late.deliver('first');
    late.fail(new Error('ignored'));
    await expect(late.wait()).resolves.toBe('first');
  });
});
