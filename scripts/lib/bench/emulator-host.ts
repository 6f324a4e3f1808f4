// Child process: the XNAT emulator serving a benchmark data directory, controlled over IPC so the
// benchmark driver can change latency/bandwidth and read the request log without sharing an
// event loop with it. Usage (forked): emulator-host.js JSON  where JSON = {dataDir, latencyMs}
// Messages in: {id, op: 'requests'|'reset'|'setOptions'|'close', options?}; out: {id, ok, result?, error?}
import { startEmulator } from '../../../src/emulator/index.js';

interface Msg {
  id: number;
  op: 'requests' | 'reset' | 'setOptions' | 'close';
  options?: { latencyMs?: number; bandwidthBytesPerSec?: number; rangeSupport?: boolean };
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as { dataDir: string; latencyMs?: number; bandwidthBytesPerSec?: number };
  const emu = await startEmulator({ dataDir: a.dataDir, seed: 'none', port: 0, latencyMs: a.latencyMs ?? 0, bandwidthBytesPerSec: a.bandwidthBytesPerSec ?? 0 });
  let closing = false;
  const close = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    await emu.close().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGTERM', () => void close());
  process.on('SIGINT', () => void close());
  process.on('disconnect', () => void close());
  process.on('message', (raw) => {
    const m = raw as Msg;
    const reply = (r: { ok: boolean; result?: unknown; error?: string }): void => void process.send?.({ id: m.id, ...r });
    try {
      switch (m.op) {
        case 'requests':
          return reply({ ok: true, result: emu.requests() });
        case 'reset':
          emu.resetRequests();
          return reply({ ok: true });
        case 'setOptions':
          emu.setOptions(m.options ?? {});
          return reply({ ok: true });
        case 'close':
          reply({ ok: true });
          void close();
          return;
        default:
          return reply({ ok: false, error: `unknown op ${String((m as { op: unknown }).op)}` });
      }
    } catch (err) {
      reply({ ok: false, error: (err as Error).message });
    }
  });
  process.send?.({ ready: true, url: emu.url });
}

main().catch((err: unknown) => {
  console.error(`emulator-host: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
