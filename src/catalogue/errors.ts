// What the catalogue says of a mount path that leads nowhere. The fs layer turns it (and the
// client's XnatErrors) into errnos; the catalogue itself knows nothing of the kernel.

export class PathError extends Error {
  constructor(
    /** not-found: XNAT lists no such name; not-a-folder: the path goes through a file. */
    readonly kind: 'not-found' | 'not-a-folder',
    message: string,
  ) {
    super(message);
    this.name = 'PathError';
  }
}
