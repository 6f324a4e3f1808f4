// A separate process that mounts a small memfs through our adapter (run via transpile.ts).
//   node mount-child.js hold <mountpoint> [attr-timeout-s]  mount, print MOUNTED, wait (to be SIGKILLed)
//   node mount-child.js list <mountpoint>  mount, ls + cat through it, unmount, print JSON
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mountFuse } from '../../src/fs/fuse-adapter.js';
import { createMemFs } from './memfs.js';

const [mode, mountpoint, attrTimeout] = process.argv.slice(2);
const sh = promisify(execFile); // async: our own handlers answer on this thread

const mount = await mountFuse(createMemFs({ '/hello.txt': 'hello from memfs\n', '/dir/a': 'a' }), {
  mountpoint,
  fsname: 'xnatfs-child',
  kernelCache: false,
  attrTimeout: Number(attrTimeout ?? 1),
  entryTimeout: Number(attrTimeout ?? 1),
  bigWrites: true,
  opTimeoutMs: 10_000,
});

if (mode === 'hold') {
  process.stdout.write('MOUNTED\n');
  setInterval(() => {}, 60_000);
} else {
  const result: Record<string, unknown> = { uid: process.getuid?.() };
  try {
    result.ls = (await sh('ls', ['-la', mountpoint])).stdout;
    result.cat = (await sh('cat', [`${mountpoint}/hello.txt`])).stdout;
  } catch (err) {
    result.error = String(err);
  }
  await mount.unmount();
  process.stdout.write(JSON.stringify(result) + '\n');
  // (no process.exit: the process must end by itself once unmounted)
}
