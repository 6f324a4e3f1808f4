// Per-response bandwidth cap: a token bucket in front of res.write that also honours backpressure.
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  constructor(private readonly rate: () => number) {
    // a small initial burst so tiny responses are not delayed at all
    this.tokens = Math.min(rate(), 16 * 1024);
  }
  /** Resolves once `n` bytes may be sent. */
  async take(n: number): Promise<void> {
    for (;;) {
      const rate = this.rate();
      if (!rate) return;
      const now = performance.now();
      this.tokens = Math.min(rate, this.tokens + ((now - this.last) / 1000) * rate);
      this.last = now;
      if (this.tokens >= n || (this.tokens >= rate && n > rate)) {
        this.tokens -= n;
        return;
      }
      await sleep(Math.max(1, Math.ceil(((Math.min(n, rate) - this.tokens) / rate) * 1000)));
    }
  }
}

/** A Writable-like sink that throttles and awaits drain; throws once the target is gone. */
export class ThrottledWriter {
  private readonly bucket: TokenBucket;
  bytes = 0;
  constructor(
    private readonly out: Writable,
    rate: () => number,
  ) {
    this.bucket = new TokenBucket(rate);
  }
  async write(chunk: Buffer): Promise<void> {
    // slice big chunks so the cap is smooth rather than bursty
    const slice = 64 * 1024;
    for (let off = 0; off < chunk.length; off += slice) {
      const part = chunk.subarray(off, off + slice);
      await this.bucket.take(part.length);
      if (this.out.destroyed || this.out.writableEnded) throw new Error('client went away');
      this.bytes += part.length;
      if (!this.out.write(part)) await drainOrClose(this.out);
    }
  }
  async pipeFrom(src: Readable): Promise<void> {
    try {
      for await (const chunk of src as AsyncIterable<Buffer>) await this.write(chunk);
    } finally {
      src.destroy();
    }
  }
}

/** Wait for 'drain' or 'close', removing both listeners (events.once would leave the loser behind). */
function drainOrClose(out: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}
