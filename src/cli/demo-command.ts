// `xnatfs demo [MOUNTPOINT]`: the embedded XNAT emulator with its sample archive, mounted, plus a
// short tour (ls, ls -l, dcm2niix on the mount) so a newcomer sees it work at once.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startEmulator } from '../emulator/index.js';
import { createXnatClient } from '../xnat/client.js';
import { parseCount, UsageError } from './args.js';
import { startMount, stopOnSignals } from './mount-command.js';

export const DEMO_HELP = `Usage: xnatfs demo [MOUNTPOINT] [--once] [--port N]

Starts the XNAT emulator with a sample archive (users demo/demo and reader/reader) on
127.0.0.1, mounts it on MOUNTPOINT (default: $TMPDIR/xnatfs-demo), shows a few commands
on it, and stays mounted until Ctrl-C. --once unmounts right after the tour.
`;

const DICOM_DIR = 'projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1/scans/4-Ax_3D_T1/resources/DICOM/files';

/** Run a program without blocking the event loop (this process serves the mount it reads). */
function show(cmd: string, args: string[], shown?: string): Promise<number> {
  process.stdout.write(`\n$ ${shown ?? [cmd, ...args].map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ')}\n`);
  return new Promise((res) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (err) => {
      console.error(`(${cmd} not available: ${err.message})`);
      res(127);
    });
    child.on('close', (code) => res(code ?? 1));
  });
}

export async function runDemoCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { once: { type: 'boolean', default: false }, port: { type: 'string' } },
  });
  if (positionals.length > 1) throw new UsageError('demo takes at most one MOUNTPOINT');
  const port = parseCount(values.port, '--port', 0);
  if (!Number.isInteger(port) || port > 65535) throw new UsageError(`--port: '${values.port}' must be a port number (1-65535)`);
  const mountpoint = resolve(positionals[0] ?? join(tmpdir(), 'xnatfs-demo'));
  await mkdir(mountpoint, { recursive: true });
  // The emulator first: when its port is taken, there is no work folder to leave behind.
  const emulator = await startEmulator({ port });
  const work = await mkdtemp(join(tmpdir(), 'xnatfs-demo-')).catch(async (err: unknown) => {
    await emulator.close();
    throw err;
  });
  let code = 0;
  try {
    const client = await createXnatClient({
      baseUrl: emulator.url,
      credentials: { kind: 'password', user: 'demo', password: 'demo', userSource: 'option', passwordSource: 'option' },
    });
    const m = await startMount(
      {
        url: emulator.url,
        mountpoint,
        client: {},
        stack: {
          cacheDir: join(work, 'cache'),
          cacheBytes: 2 ** 30,
          listingTtlMs: 600_000,
          readOnly: false,
          uploadConcurrency: 4,
        },
        opTimeoutMs: 120_000,
        uploadWaitMs: 30_000,
        allowOther: false,
      },
      client,
    );
    stopOnSignals(m);
    console.log(`XNAT emulator at ${emulator.url} (users demo/demo and reader/reader), mounted at ${mountpoint}`);
    const results = [
      await show('ls', [join(mountpoint, 'projects')]),
      await show('ls', [join(mountpoint, 'projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1/scans')]),
      await show('sh', ['-c', `ls -l "$0" | head -5`, join(mountpoint, DICOM_DIR)], `ls -l ${join(mountpoint, DICOM_DIR)} | head -5`),
    ];
    const out = join(work, 'nifti');
    await mkdir(out);
    const dcm = await show('dcm2niix', ['-o', out, '-f', '%p_%s', join(mountpoint, DICOM_DIR)]);
    if (dcm !== 127) {
      results.push(dcm);
      results.push(await show('ls', ['-l', out]));
    }
    code = results.some((c) => c !== 0) ? 1 : 0;
    console.log(`
Try it yourself in another terminal:
  ls -l ${mountpoint}/projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1/scans/
  dcm2niix -o /tmp ${join(mountpoint, DICOM_DIR)}
  mkdir ${mountpoint}/projects/DEMO/experiments/SUBJ01_MR1/resources/RESULTS
  cp somefile ${mountpoint}/projects/DEMO/experiments/SUBJ01_MR1/resources/RESULTS/files/
${values.once ? '' : `Press Ctrl-C to unmount (or run: npx xnatfs unmount ${mountpoint}).`}`);
    if (values.once) await m.stop();
    const stopCode = await m.done;
    return code || stopCode;
  } finally {
    await emulator.close().catch(() => undefined);
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
}
