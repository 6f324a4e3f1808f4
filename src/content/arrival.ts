// A value on its way that most of the time nobody waits for: a small file in a prefetch zip is
// usually delivered before any program opens it. The promise is made only for a waiter, so the
// thousands of members of a zip cost no promise (and no microtask) each.

export class Arrival<T> {
  private outcome: { value: T } | { error: Error } | null = null;
  private promise: Promise<T> | null = null;
  private settle: { resolve: (v: T) => void; reject: (e: Error) => void } | null = null;

  get settled(): boolean {
    return this.outcome !== null;
  }

  /** Someone waits for it (wait() was called before it settled). */
  get awaited(): boolean {
    return this.settle !== null && this.outcome === null;
  }

  /** The value once delivered; rejects if it failed. */
  wait(): Promise<T> {
    if (!this.promise) {
      const o = this.outcome;
      if (o) this.promise = 'value' in o ? Promise.resolve(o.value) : Promise.reject(o.error);
      else this.promise = new Promise<T>((resolve, reject) => (this.settle = { resolve, reject }));
    }
    return this.promise;
  }

  deliver(value: T): void {
    if (this.outcome) return;
    this.outcome = { value };
    this.settle?.resolve(value);
  }

  fail(error: Error): void {
    if (this.outcome) return;
    this.outcome = { error };
    this.settle?.reject(error);
  }
}
