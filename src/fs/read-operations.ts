// The read side of the filesystem: getattr, readdir, open, read, release, statfs.
// Every handler resolves the path through the catalogue (listings cached in memory, so a stat
// after a listing costs no request) and maps failures to a precise errno.
import { constants } from 'node:fs';
import { dirname } from 'node:path';
import type { Catalogue, DirNode, FileNode, Node } from '../catalogue/catalogue.js';
import { isDir, ownerKey } from '../catalogue/catalogue.js';
import type { TreeDir } from '../catalogue/file-tree.js';
import type { ContentStore, FolderContext } from '../content/content-store.js';
import type { FileRef } from '../xnat/types.js';
import { FsError, toFsError } from './errors.js';
import { OpenVersions } from './open-versions.js';
import type { FsOps, MaybePromise, Stat, StatFs } from './types.js';

// O_ACCMODE is not exported by node:fs; it is 3 on Linux and macOS.
const O_ACCMODE = 3;

export interface FsContext {
  catalogue: Catalogue;
  content: ContentStore;
  readOnly: boolean;
  uid: number;
  gid: number;
  /** Times shown above files/ (XNAT listings carry no times); files show their resource's (ResourceTimes). */
  mountTime: Date;
}

export function fileRefOf(node: Pick<FileNode, 'owner' | 'resource' | 'entry'>): FileRef {
  return {
    owner: node.owner,
    resource: node.resource.id,
    path: node.entry.path,
    size: node.entry.size,
    digest: node.entry.digest,
    uri: node.entry.uri,
  };
}

export function dirStat(ctx: FsContext, mtime?: Date): Stat {
  const t = mtime ?? ctx.mountTime;
  return { mode: constants.S_IFDIR | (ctx.readOnly ? 0o555 : 0o755), size: 4096, nlink: 2, uid: ctx.uid, gid: ctx.gid, mtime: t, atime: t, ctime: t };
}

export function fileStat(ctx: FsContext, size: number, mtime?: Date): Stat {
  const t = mtime ?? ctx.mountTime;
  return {
    mode: constants.S_IFREG | (ctx.readOnly ? 0o444 : 0o644),
    size,
    nlink: 1,
    uid: ctx.uid,
    gid: ctx.gid,
    mtime: t,
    atime: t,
    ctime: t,
    blocks: Math.ceil(size / 512),
    blksize: 128 * 1024,
  };
}

export function statOf(ctx: FsContext, node: Node): Stat {
  if (node.kind === 'file') return fileStat(ctx, node.entry.size, new Date(node.shownAt));
  return node.kind === 'folder' ? dirStat(ctx, new Date(node.shownAt)) : dirStat(ctx);
}

/** The node at `path`, or the FsError the kernel should get. */
export function resolveNode(ctx: FsContext, path: string): Promise<Node> {
  return ctx.catalogue.resolve(path).catch((err: unknown) => {
    throw toFsError(err, path);
  });
}

export async function resolveDir(ctx: FsContext, path: string): Promise<DirNode> {
  const node = await resolveNode(ctx, path);
  if (!isDir(node)) throw new FsError('ENOTDIR', `${path}: not a folder`);
  return node;
}

export type ReadOperations = Required<Pick<FsOps, 'getattr' | 'readdir' | 'open' | 'read' | 'release' | 'statfs'>> & {
  /** Versions held by open read handles (see open-versions.ts). */
  held: OpenVersions<Node>;
};

export function createReadOperations(ctx: FsContext): ReadOperations {
  const held = new OpenVersions<Node>();
  /** Open `node` for reading and hold its version while the handle is open. */
  const openHeld = (node: Node, path: string, flags: number): MaybePromise<number> => {
    const fd = openNode(ctx, node, path, flags);
    if (fd instanceof Promise) {
      return fd.then((n) => {
        held.add(path, node, n);
        return n;
      });
    }
    held.add(path, node, fd);
    return fd;
  };
  return {
    held,

    getattr(path) {
      const h = held.get(path);
      if (h) return statOf(ctx, h.node);
      // A path resolved before (the lookup after a listing, a stat after open) costs no promise.
      const known = ctx.catalogue.peekResolved(path);
      return known ? statOf(ctx, known) : resolveNode(ctx, path).then((node) => statOf(ctx, node));
    },

    async readdir(path) {
      const node = await resolveDir(ctx, path);
      const names = await ctx.catalogue.list(node).catch((err: unknown) => {
        throw toFsError(err, path);
      });
      if (node.kind === 'folder') ctx.content.noteListed(folderContext(ctx, node, path));
      // Attributes with the names give `find` and `ls` each entry's type without a stat apiece.
      const shown = node.kind === 'folder' ? new Date(node.shownAt) : undefined;
      const dir = dirStat(ctx, shown);
      const stats =
        node.kind === 'folder'
          ? names.map((n) => {
              const f = node.tree.files.get(n);
              return f ? fileStat(ctx, f.size, shown) : dir;
            })
          : names.map(() => dir); // above files/, every entry is a folder
      return { names: ['.', '..', ...names], stats: [dir, dir, ...stats] };
    },

    open(path, flags) {
      const known = held.get(path)?.node ?? ctx.catalogue.peekResolved(path);
      if (!known) return resolveNode(ctx, path).then((node) => openHeld(node, path, flags));
      try {
        return openHeld(known, path, flags);
      } catch (err) {
        return Promise.reject(err);
      }
    },

    read(path, fd, buf, len, pos) {
      const failed = (err: unknown): Promise<never> => Promise.reject(toFsError(err, `reading ${path}`));
      try {
        const n = ctx.content.read(fd, buf, len, pos);
        return n instanceof Promise ? n.catch(failed) : n;
      } catch (err) {
        return failed(err);
      }
    },

    release(_path, fd) {
      held.release(fd);
      return ctx.content.release(fd);
    },

    async statfs() {
      return statfsOf();
    },
  };
}

function openNode(ctx: FsContext, node: Node, path: string, flags: number): MaybePromise<number> {
  if (node.kind !== 'file') throw new FsError('EISDIR', `${path}: is a folder`);
  if ((flags & O_ACCMODE) !== constants.O_RDONLY) {
    if (ctx.readOnly) throw new FsError('EROFS', `${path}: the mount is read-only (mounted with --read-only)`);
    throw new FsError('EACCES', `${path}: files already on XNAT cannot be modified in place; write a new file or replace it with cp`);
  }
  const ref = fileRefOf(node);
  const opened = ctx.content.open(ref);
  const noted = (fd: number): number => {
    ctx.content.noteOpen(folderContext(ctx, node, dirname(path)), ref);
    return fd;
  };
  return opened instanceof Promise ? opened.then(noted) : noted(opened);
}

/** What the content store's prefetch needs to know about a folder inside a resource. */
function folderContext(ctx: FsContext, node: { owner: FileNode['owner']; resource: FileNode['resource'] }, folderPath: string): FolderContext {
  return {
    key: `${ownerKey(node.owner)}:${node.resource.id}:${folderPath}`,
    siblings: () => siblingsOf(ctx, folderPath),
    resourceFiles: () => resourceFilesOf(ctx, node),
    resource: {
      owner: node.owner,
      id: node.resource.id,
      totalBytes: ctx.catalogue.peekFileTree(node.owner, node.resource)?.totalSize ?? Number.POSITIVE_INFINITY,
    },
  };
}

/** Files of an already-resolved folder, in listing order (cached: no request). */
function siblingsOf(ctx: FsContext, folderPath: string): FileRef[] {
  const node = ctx.catalogue.peekResolved(folderPath);
  if (!node || node.kind !== 'folder') return [];
  const refs: FileRef[] = [];
  for (const [name, entry] of node.tree.files) {
    refs.push(fileRefOf({ owner: node.owner, resource: node.resource, entry }));
  }
  return refs;
}

/** Every file of the resource, from its listing in memory (none when it is not there). */
function resourceFilesOf(ctx: FsContext, node: Pick<FileNode, 'owner' | 'resource'>): FileRef[] {
  const refs: FileRef[] = [];
  const walk = (dir: TreeDir): void => {
    for (const entry of dir.files.values()) refs.push(fileRefOf({ owner: node.owner, resource: node.resource, entry }));
    for (const sub of dir.dirs.values()) walk(sub);
  };
  const tree = ctx.catalogue.peekFileTree(node.owner, node.resource);
  if (tree) walk(tree);
  return refs;
}

function statfsOf(): StatFs {
  // XNAT has no quota API: report a large, mostly free volume so tools that check free space
  // before copying (cp, rsync, some GUIs) don't refuse to write.
  const bsize = 4096;
  const blocks = 2 ** 40 / bsize;
  return { bsize, frsize: bsize, blocks, bfree: blocks, bavail: blocks, files: 1e9, ffree: 1e9, favail: 1e9, fsid: 0x786e6174, flag: 0, namemax: 255 };
}
