// Child process: mounts an in-memory FsOps through the same adapter (mountFuse) and options that
// `xnatfs mount` uses, so the benchmark can measure the binding's own floor/ceiling.
// Usage (forked with IPC): memfs-host.js JSON  where JSON = {mountpoint, kind, sizes}
//   kind 'small': /files/<name> for every small file of fixture b)
//   kind 'large': /large.bin of fixture c)
//   kind 'tree': experiment/<path> for every file of fixture d) (zero-filled)
//   kind 'empty': an empty, writable root (upload ceiling)
import { mountFuse, type FuseMount } from '../../../src/fs/fuse-adapter.js';
import { bytesFor, largeSeed, smallFiles, streamFor, treePaths, type BenchSizes } from './fixtures.js';
// The same in-memory filesystem the adapter tests mount.
import { createMemFs } from '../../../test/helpers/memfs.js';

interface HostArgs {
  mountpoint: string;
  kind: 'small' | 'large' | 'tree' | 'empty';
  sizes: BenchSizes;
  /** Also register flush and release, as xnatfs does. */
  handleCallbacks?: boolean;
}

async function collect(seed: string, n: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(n);
  let off = 0;
  for await (const chunk of streamFor(seed, n) as AsyncIterable<Buffer>) {
    chunk.copy(out, off);
    off += chunk.length;
  }
  return out;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as HostArgs;
  const initial: Array<{ path: string; data: Buffer }> = [];
  if (a.kind === 'small') for (const f of smallFiles(a.sizes)) initial.push({ path: `/files/${f.name}`, data: bytesFor(f.seed, f.size) });
  if (a.kind === 'tree') for (const f of treePaths(a.sizes)) initial.push({ path: `/experiment/${f.rel}`, data: Buffer.alloc(f.size) });
  if (a.kind === 'large') initial.push({ path: '/large.bin', data: await collect(largeSeed(), a.sizes.largeBytes) });
  const ops = createMemFs(initial, { handleCallbacks: a.handleCallbacks ?? false });
  // The options startMount (src/cli/mount-command.ts) passes for a default mount.
  const fuse: FuseMount = await mountFuse(ops, {
    mountpoint: a.mountpoint,
    fsname: 'xnatfs-bench-memfs',
    kernelCache: true,
    attrTimeout: 60,
    entryTimeout: 60,
    bigWrites: true,
    opTimeoutMs: 120_000,
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    fuse.unmount().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`memfs-host: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
  process.on('message', (m) => {
    if ((m as { op?: string }).op === 'stop') stop();
  });
  process.send?.({ ready: true });
}

main().catch((err: unknown) => {
  console.error(`memfs-host: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
