// Errors the fs layer hands to the kernel. Every failure of a FUSE handler is an FsError
// carrying the errno the kernel should see and one line for people, saying what to do.
import { constants } from 'node:os';
import { PathError } from '../catalogue/errors.js';
import { XnatError } from '../xnat/types.js';

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

/** Turn a catalogue or client error into the errno the kernel should see; `what` leads the message. */
export function toFsError(err: unknown, what: string): FsError {
  if (err instanceof FsError) return err;
  if (err instanceof PathError) return new FsError(err.kind === 'not-found' ? 'ENOENT' : 'ENOTDIR', err.message, { cause: err });
  if (err instanceof XnatError) {
    switch (err.kind) {
      case 'not-found':
        return new FsError('ENOENT', `${what}: not found on XNAT`, { cause: err });
      case 'forbidden':
        return new FsError('EACCES', `${what}: XNAT denies access (403); ask the project owner for access`, { cause: err });
      case 'unauthorized':
        return new FsError('EACCES', `${what}: ${err.message}`, { cause: err });
      case 'conflict':
        return new FsError('EEXIST', `${what}: already exists on XNAT`, { cause: err });
      default:
        return new FsError('EIO', `${what}: ${err.message}`, { cause: err });
    }
  }
  const code = (err as NodeJS.ErrnoException | null)?.code;
  // A handle already let go (a read racing the unmount): the kernel's own errno, not a failure to report.
  if (code === 'EBADF') return new FsError('EBADF', `${what}: ${(err as Error).message}`, { cause: err });
  // The local disk under the spool and cache: the program should hear "No space left on device".
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FsError('ENOSPC', `${what}: the disk of xnatfs's cache folder is full (${code}); free space there or mount with another --cache-dir`, { cause: err });
  }
  return new FsError('EIO', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

export function errnoOf(code: ErrnoName): number {
  return -constants.errno[code];
}
