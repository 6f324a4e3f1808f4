// The version of a file that read handles hold open. While any handle is open, the path keeps
// that version's attributes and new opens get the same bytes, even when the listing changes
// meanwhile (the file replaced or deleted on XNAT by someone else): the kernel keeps one size
// per file, and took the new one from getattr, so an open reader saw the old bytes cut short
// without an error, or ENOENT in the middle of a read. Close-to-open, as NFS: the next open after
// every handle is closed sees XNAT's current version. Changes made through this mount (a write,
// rm, mv) end the hold at once.
interface Held<N> {
  path: string;
  node: N;
  handles: number;
}

export class OpenVersions<N> {
  private readonly byPath = new Map<string, Held<N>>();
  private readonly byFd = new Map<number, Held<N>>();

  /** The version held open at `path`, if any. */
  get(path: string): { node: N } | undefined {
    return this.byPath.get(path);
  }

  /** A read handle `fd` was opened on `node` at `path`. */
  add(path: string, node: N, fd: number): void {
    let h = this.byPath.get(path);
    if (!h) {
      h = { path, node, handles: 0 };
      this.byPath.set(path, h);
    }
    h.handles++;
    this.byFd.set(fd, h);
  }

  release(fd: number): void {
    const h = this.byFd.get(fd);
    if (!h) return;
    this.byFd.delete(fd);
    if (--h.handles === 0 && this.byPath.get(h.path) === h) this.byPath.delete(h.path);
  }

  /** The read handles opened at `path` still open (also after `forget`). */
  handlesAt(path: string): number[] {
    const out: number[] = [];
    for (const [fd, h] of this.byFd) if (h.path === path) out.push(fd);
    return out;
  }

  /**
   * libfuse renamed the file its handles are open on (`mv`, or the `.fuse_hidden…` name of a
   * file removed while open): their later reads and changes come by the new name. What is held
   * is not: it is the version XNAT had under the old name.
   */
  move(src: string, dest: string): void {
    this.byPath.delete(src);
    this.byPath.delete(dest);
    for (const h of this.byFd.values()) if (h.path === src) h.path = dest;
  }

  /** The path was changed through the mount: what is held there no longer answers for it. */
  forget(path: string): void {
    this.byPath.delete(path);
  }
}
