// Errors the fs layer hands to the kernel. Every failure of a FUSE handler is an FsError
// carrying the errno the kernel should see and one line for people, saying what to do.
import { constants } from 'node:os';

export type ErrnoName =
  | 'ENOENT' | 'EACCES' | 'EPERM' | 'EROFS' | 'EIO' | 'ENOTEMPTY' | 'EEXIST' | 'EISDIR'
  | 'ENOTDIR' | 'EINVAL' | 'EXDEV' | 'ENOSPC' | 'EBADF' | 'ENAMETOOLONG' | 'ETIMEDOUT'
  | 'ENOTSUP' | 'EBUSY' | 'EAGAIN' | 'EFBIG' | 'ENOSYS';

export class FsError extends Error {
  readonly code: ErrnoName;
  constructor(code: ErrnoName, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FsError';
    this.code = code;
  }
  /** Negative errno as FUSE wants it. */
  get errno(): number {
    return -constants.errno[this.code];
  }
}

export function errnoOf(code: ErrnoName): number {
  return -constants.errno[code];
}
