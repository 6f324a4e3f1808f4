// The cap on HTTP requests in flight, with two classes. Foreground requests (a program waiting:
// a read, a listing) are served before any queued background request (prefetch), and background
// requests never hold the last slots: with p-limit's single FIFO, a folder's prefetch filled
// every connection, and a read that queued behind it waited for each of their timeouts in turn.
// A waiter can be dropped: when its deadline passes, when its signal aborts, or (background
// only) when the server is found not to answer.

interface Waiter {
  background: boolean;
  grant: () => void;
  fail: (err: unknown) => void;
  /** Undoes the deadline timer and abort listener. */
  cleanup: (() => void) | null;
}

/**
 * Whether a prefetch's request is still background. When a program opens the file being
 * prefetched, promote() moves the request ahead of every other prefetch at once, also while it
 * already waits for a connection (a program must not wait behind the rest of a folder).
 */
export class Standing {
  private bg = true;
  private onPromote: (() => void) | null = null;

  get background(): boolean {
    return this.bg;
  }

  promote(): void {
    if (!this.bg) return;
    this.bg = false;
    const fn = this.onPromote;
    this.onPromote = null;
    fn?.();
  }

  /** For Slots: what promote() must do while the request waits (null: it does not wait). */
  whenPromoted(fn: (() => void) | null): void {
    this.onPromote = fn;
  }
}

export interface SlotWait {
  background: boolean;
  /** A background request that may be promoted while it waits. */
  standing?: Standing;
  /** Give up after this many ms in the queue (0: never). */
  deadlineMs: number;
  /** The error a waiter whose deadline passed is rejected with. */
  onDeadline: () => Error;
  signal?: AbortSignal;
}

export class Slots {
  private inUse = 0;
  private readonly foreground: Waiter[] = [];
  private readonly background: Waiter[] = [];
  private idleWaiters: Array<() => void> = [];

  constructor(
    readonly max: number,
    /** Background requests start only while fewer than this many slots are taken (by anything). */
    readonly maxBackground: number,
  ) {}

  get pending(): number {
    return this.foreground.length + this.background.length;
  }

  /**
   * A slot, at once (undefined: no promise, the common case) or once one is free. The caller
   * must release() it.
   */
  acquire(w: SlotWait): Promise<void> | undefined {
    if (this.free(w.background) && (w.background ? this.foreground.length === 0 && this.background.length === 0 : this.foreground.length === 0)) {
      this.take();
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { background: w.background, grant: resolve, fail: reject, cleanup: null };
      const queue = w.background ? this.background : this.foreground;
      queue.push(waiter);
      // Timers and listeners only for requests that actually wait: the fast path stays bare.
      const timer = w.deadlineMs > 0 ? setTimeout(() => this.drop(waiter, w.onDeadline()), w.deadlineMs) : null;
      const onAbort = (): void => this.drop(waiter, w.signal?.reason);
      w.signal?.addEventListener('abort', onAbort, { once: true });
      if (w.background) w.standing?.whenPromoted(() => this.promote(waiter));
      waiter.cleanup = () => {
        if (timer) clearTimeout(timer);
        w.signal?.removeEventListener('abort', onAbort);
        w.standing?.whenPromoted(null);
      };
      if (w.signal?.aborted) onAbort();
    });
  }

  release(): void {
    this.inUse--;
    this.next();
    if (this.inUse === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves once no slot is held. */
  idle(): Promise<void> {
    if (this.inUse === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Reject every queued background request with `err` (the server does not answer). */
  dropBackground(err: () => Error): number {
    const dropped = this.background.splice(0);
    for (const w of dropped) {
      w.cleanup?.();
      w.fail(err());
    }
    return dropped.length;
  }

  /** Reject everything queued (closing). */
  dropAll(err: () => Error): void {
    for (const w of [...this.foreground.splice(0), ...this.background.splice(0)]) {
      w.cleanup?.();
      w.fail(err());
    }
  }

  /**
   * Background starts only while fewer than maxBackground slots are taken by anything: counting
   * only its own would let it fill the slots that uploads and listings left, and a read would
   * queue behind it again.
   */
  private free(background: boolean): boolean {
    return this.inUse < (background ? this.maxBackground : this.max);
  }

  private take(): void {
    this.inUse++;
  }

  private next(): void {
    for (;;) {
      const queue = this.foreground.length > 0 ? this.foreground : this.background.length > 0 && this.free(true) ? this.background : null;
      if (!queue || this.inUse >= this.max) return;
      const w = queue.shift()!;
      w.cleanup?.();
      this.take();
      w.grant();
    }
  }

  /** A queued background waiter becomes foreground: last in that queue, ahead of every prefetch. */
  private promote(w: Waiter): void {
    const i = this.background.indexOf(w);
    if (i < 0) return;
    this.background.splice(i, 1);
    w.background = false;
    this.foreground.push(w);
    this.next();
  }

  private drop(w: Waiter, err: unknown): void {
    const queue = w.background ? this.background : this.foreground;
    const i = queue.indexOf(w);
    if (i < 0) return; // granted meanwhile
    queue.splice(i, 1);
    w.cleanup?.();
    w.fail(err);
  }
}
