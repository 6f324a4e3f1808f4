// One emulator per test file, and the XNAT clients its tests open on it (closed after each test,
// with the emulator's injected faults cleared).
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { createXnatClient, type XnatClient, type XnatClientOptions } from '../../src/xnat/client.js';

export interface EmulatorClients {
  readonly emu: RunningEmulator;
  /** A client logged in as demo with fast retries, plus `defaults` and `extra`. */
  client(extra?: Partial<XnatClientOptions>): Promise<XnatClient>;
}

export function emulatorWithClients(defaults: (url: string) => Partial<XnatClientOptions> = () => ({})): EmulatorClients {
  let emu: RunningEmulator | undefined;
  const open: XnatClient[] = [];
  beforeAll(async () => {
    emu = await startEmulator();
  });
  afterEach(async () => {
    emu?.clearFaults();
    while (open.length) await open.pop()!.close();
  });
  afterAll(async () => {
    await emu?.close();
  });
  const started = (): RunningEmulator => {
    if (!emu) throw new Error('the emulator is not started yet (use it inside tests)');
    return emu;
  };
  return {
    get emu() {
      return started();
    },
    async client(extra = {}) {
      const c = await createXnatClient({
        baseUrl: started().url,
        credentials: { kind: 'password', user: 'demo', password: 'demo', userSource: 'option', passwordSource: 'option' },
        retry: { baseDelayMs: 5, maxDelayMs: 20 },
        ...defaults(started().url),
        ...extra,
      });
      open.push(c);
      return c;
    },
  };
}
