// `xnatfs unmount MOUNTPOINT`: detach the mount; the mounting process notices, finishes pending
// uploads and exits.
import { resolve } from 'node:path';
import { unmountPath } from '../fs/mountpoint.js';
import { UsageError } from './args.js';

export async function runUnmountCommand(argv: string[]): Promise<number> {
  if (argv.length !== 1 || argv[0]!.startsWith('-')) throw new UsageError('unmount needs exactly one MOUNTPOINT');
  await unmountPath(resolve(argv[0]!));
  return 0;
}
