// A resource's flat file listing turned into folders, built once per listing so that every
// `stat` and `readdir` inside the resource is a map lookup.
import type { FileEntry } from '../xnat/types.js';
import { escapeName } from './names.js';

export interface TreeDir {
  /** Child folders by path component (escaped). */
  dirs: Map<string, TreeDir>;
  /** Child files by path component (escaped). */
  files: Map<string, FileEntry>;
  /** Sum of the sizes of every file below. */
  totalSize: number;
}

/** A resource's files/ folder. */
export interface FileTree extends TreeDir {
  /** The same for the same files (path, size, digest) in any order (Fingerprint). */
  fingerprint: string;
  /** When its files show as modified, in ms (resource-times.ts); 0 until the catalogue sets it. */
  shownAt: number;
}

function newDir(): TreeDir {
  return { dirs: new Map(), files: new Map(), totalSize: 0 };
}

/** Entries placed between two turns of the event loop (100,000 take about 0.2 s in all). */
const ENTRIES_PER_TURN = 10_000;

export async function buildFileTree(entries: readonly FileEntry[]): Promise<FileTree> {
  const root: FileTree = { ...newDir(), fingerprint: '', shownAt: 0 };
  const fp = new Fingerprint();
  let n = 0;
  for (const entry of entries) {
    // A session of 100,000 files must not hold every FUSE callback for 0.2 s.
    if (++n % ENTRIES_PER_TURN === 0) await new Promise((resolve) => setImmediate(resolve));
    putInTree(root, entry);
    fp.add(entry);
  }
  root.fingerprint = fp.value();
  return root;
}

/**
 * Order-independent digest of a listing: sums of two 32-bit hashes of each file's path, size and
 * MD5, and the count. XNAT may list rows in any order; a change to any file changes it (odds of
 * missing one: about 2^-64). Cheap enough to run over 100,000 rows while the tree is built.
 */
export class Fingerprint {
  private count = 0;
  private a = 0;
  private b = 0;
  add(entry: Pick<FileEntry, 'path' | 'size' | 'digest'>): void {
    const [h1, h2] = hashes(entry);
    this.a = (this.a + h1) >>> 0;
    this.b = (this.b + h2) >>> 0;
    this.count++;
  }
  value(): string {
    return `${this.count}.${this.a.toString(36)}.${this.b.toString(36)}`;
  }

  /**
   * The fingerprint of a listing `value` without `entry` (a file deleted here): what XNAT's next
   * listing has when nobody else changed the resource meanwhile.
   */
  static without(value: string, entry: Pick<FileEntry, 'path' | 'size' | 'digest'>): string {
    return Fingerprint.adjusted(value, entry, -1);
  }

  /** The fingerprint of a listing `value` with `entry` added (a file uploaded here). */
  static with(value: string, entry: Pick<FileEntry, 'path' | 'size' | 'digest'>): string {
    return Fingerprint.adjusted(value, entry, 1);
  }

  private static adjusted(value: string, entry: Pick<FileEntry, 'path' | 'size' | 'digest'>, sign: 1 | -1): string {
    const [count, a, b] = value.split('.');
    const [h1, h2] = hashes(entry);
    const f = new Fingerprint();
    f.count = Number(count) + sign;
    f.a = (parseInt(a!, 36) + sign * h1) >>> 0;
    f.b = (parseInt(b!, 36) + sign * h2) >>> 0;
    return f.value();
  }
}

function hashes(entry: Pick<FileEntry, 'path' | 'size' | 'digest'>): [number, number] {
  const s = `${entry.path}\0${entry.size}\0${entry.digest.toLowerCase()}`;
  let h1 = 0x811c9dc5; // FNV-1a
  let h2 = 5381; // djb2
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = (Math.imul(h2, 33) + c) | 0;
  }
  return [h1 >>> 0, h2 >>> 0];
}

/** Add a file, or replace the one at its path, keeping every folder's total size right. */
export function putInTree(root: TreeDir, entry: FileEntry): void {
  const parts = entry.path.split('/').filter((p) => p !== '');
  if (parts.length === 0) return;
  const folders = [root];
  let dir = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const name = escapeName(parts[i]!);
    let next = dir.dirs.get(name);
    if (!next) {
      next = newDir();
      dir.dirs.set(name, next);
    }
    dir = next;
    folders.push(dir);
  }
  const name = escapeName(parts[parts.length - 1]!);
  const delta = entry.size - (dir.files.get(name)?.size ?? 0);
  for (const f of folders) f.totalSize += delta;
  dir.files.set(name, entry);
}

/** Walk escaped path components; returns the folder, the file, or null. */
export function lookupInTree(root: TreeDir, components: readonly string[]): TreeDir | FileEntry | null {
  let dir = root;
  for (let i = 0; i < components.length; i++) {
    const name = components[i]!;
    const sub = dir.dirs.get(name);
    if (sub) {
      dir = sub;
      continue;
    }
    if (i === components.length - 1) return dir.files.get(name) ?? null;
    return null;
  }
  return dir;
}

/** A path inside the resource ("sub/x.dcm", as XNAT lists it) as escaped tree components. */
export function componentsOf(path: string): string[] {
  return path.split('/').filter((c) => c !== '').map(escapeName);
}

/** The file listed at `path` inside the resource (undefined: none, or a folder there). */
export function fileAt(root: TreeDir, path: string): FileEntry | undefined {
  const hit = lookupInTree(root, componentsOf(path));
  return hit && !isTreeDir(hit) ? hit : undefined;
}

export function isTreeDir(x: TreeDir | FileEntry): x is TreeDir {
  return (x as TreeDir).dirs instanceof Map;
}
