// `xnatfs emulator`: run the XNAT emulator in the foreground until SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { DEMO_USERS } from './seed.js';
import { startEmulator } from './index.js';

const USAGE = `Usage: xnatfs emulator [--port N] [--host ADDR] [--data DIR] [--seed demo|none]
                        [--latency-ms N] [--bandwidth BYTES_PER_SEC] [--range]

Runs an XNAT 1.8 REST emulator. Without --data it serves a temporary copy of the demo archive
(removed on exit); with --data DIR it serves DIR, seeding it first when it is empty.
  --range      answer Range requests with 206 (real XNAT ignores Range and sends 200)
`;

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} needs a non-negative number, got ${v}`);
  return n;
}

export async function runEmulatorCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      data: { type: 'string' },
      seed: { type: 'string' },
      'latency-ms': { type: 'string' },
      bandwidth: { type: 'string' },
      range: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.seed !== undefined && values.seed !== 'demo' && values.seed !== 'none') throw new Error('--seed must be demo or none');
  const emu = await startEmulator({
    port: num('port', values.port) ?? 0,
    host: values.host,
    dataDir: values.data,
    seed: values.seed as 'demo' | 'none' | undefined,
    latencyMs: num('latency-ms', values['latency-ms']),
    bandwidthBytesPerSec: num('bandwidth', values.bandwidth),
    rangeSupport: values.range ?? false,
  });
  console.log(`XNAT emulator listening at ${emu.url}`);
  console.log(`data directory: ${emu.dataDir}`);
  console.log(`users: ${DEMO_USERS.map((u) => `${u.name}/${u.password}`).join(', ')}`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await emu.close();
  process.exitCode = 0;
}
