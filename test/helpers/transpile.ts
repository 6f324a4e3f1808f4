// Runs our TypeScript in a separate Node process (another user, or a process we SIGKILL) without
// a build step: dist/ may be missing or stale while the tree is being edited, and `tsc -p .`
// fails whenever someone else's module does not compile yet. TypeScript (a devDependency) can
// transpile single files without type checking, so we transpile exactly the entry and the
// relative imports it reaches into a temp dir, next to a node_modules symlink for bare imports.
import { cp, mkdir, readFile, stat, symlink, writeFile, chmod } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { dir } from 'tmp-promise';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface Transpiled {
  /** The entry as a .js file to run with `node`. */
  entry: string;
  dir: string;
  cleanup(): Promise<void>;
}

async function traversableByOthers(path: string): Promise<boolean> {
  for (let p = path; ; p = dirname(p)) {
    if (((await stat(p)).mode & 0o001) === 0) return false;
    if (dirname(p) === p) return true;
  }
}

/** Transpile `entryTs` (absolute, inside the repo) and everything it imports relatively. */
export async function transpileForChild(entryTs: string): Promise<Transpiled> {
  const out = await dir({ prefix: 'xnatfs-child-', unsafeCleanup: true });
  await chmod(out.path, 0o755); // readable by the unprivileged test user
  await writeFile(join(out.path, 'package.json'), '{ "type": "module" }\n');
  // A symlink serves other users only if they can reach the repo (a fresh clone made with
  // `mktemp -d` is 0700); otherwise they get a copy.
  if (await traversableByOthers(repoRoot)) {
    await symlink(join(repoRoot, 'node_modules'), join(out.path, 'node_modules'));
  } else {
    await cp(join(repoRoot, 'node_modules'), join(out.path, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  }

  const seen = new Set<string>();
  const queue = [resolve(entryTs)];
  while (queue.length) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = await readFile(file, 'utf8');
    for (const { fileName } of ts.preProcessFile(source, true, true).importedFiles) {
      if (fileName.startsWith('.')) queue.push(resolve(dirname(file), fileName.replace(/\.js$/, '.ts')));
    }
    const { outputText } = ts.transpileModule(source, {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    });
    const target = join(out.path, relative(repoRoot, file)).replace(/\.ts$/, '.js');
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    await writeFile(target, outputText, { mode: 0o644 });
  }
  return {
    entry: join(out.path, relative(repoRoot, resolve(entryTs))).replace(/\.ts$/, '.js'),
    dir: out.path,
    cleanup: () => out.cleanup(),
  };
}
