// A program walking a tree (find, du, ls -R, cp -r) enters the subjects or experiments of a
// folder one after another, and each costs a round trip of listings before the program can go
// on. Once two neighbours in listing order have been entered one after the other, the listings of
// the next few are asked for ahead, so that they arrive while the program is still busy with the
// current one. Looking into a single subject or experiment reads nothing ahead.

export class WalkAhead {
  /** Where each entry stands in the listing that showed it last. */
  private readonly order = new Map<string, { ids: readonly string[]; index: number }>();
  /** When each entry was last entered. */
  private readonly entered = new Map<string, number>();

  constructor(
    /** Neighbours read ahead. */
    private readonly depth = 4,
    /** The previous neighbour must have been entered this recently for a walk. */
    private readonly windowMs = 60_000,
    /** Bound on remembered entries (each map is cleared when it grows past it). */
    private readonly maxEntries = 200_000,
  ) {}

  /** A folder listed these entries, in this order. `scope` tells folders apart (e.g. the project). */
  listed(scope: string, ids: readonly string[]): void {
    if (this.order.size + ids.length > this.maxEntries) this.order.clear();
    ids.forEach((id, index) => this.order.set(`${scope}\n${id}`, { ids, index }));
  }

  /** `id` was entered: the neighbours after it to read ahead, or none when this is no walk. */
  enter(scope: string, id: string): readonly string[] {
    const key = `${scope}\n${id}`;
    const now = Date.now();
    if (this.entered.size >= this.maxEntries) this.entered.clear();
    this.entered.set(key, now);
    const at = this.order.get(key);
    if (!at || at.index === 0) return [];
    const previous = this.entered.get(`${scope}\n${at.ids[at.index - 1]}`);
    if (previous === undefined || now - previous > this.windowMs) return [];
    return at.ids.slice(at.index + 1, at.index + 1 + this.depth);
  }
}
