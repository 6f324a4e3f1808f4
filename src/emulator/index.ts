// XNAT server emulator: public API. See xnat-api.md for the dialect it speaks.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import createDebug from 'debug';
import { AuthService, type UserSpec } from './auth.js';
import type { EmulatorState } from './context.js';
import { DEMO_USERS, seedDemo } from './seed.js';
import { EmulatorServer, type FaultKind, type LoggedRequest } from './server.js';
import { ArchiveStore, type OwnerNode } from './store.js';

export { DEMO_ARCHIVE, DEMO_USERS, DEMO_MTIME, demoFiles } from './seed.js';
export type { DemoFile, DemoProject, DemoSubject, DemoExperiment, DemoScan, DemoAssessor, DemoResource } from './seed.js';

const log = createDebug('xnatfs:emulator');

export interface EmulatorOptions {
  port?: number; // 0 = random free port; default 0
  host?: string; // default '127.0.0.1'
  dataDir?: string; // archive directory to serve; default: a fresh temp dir seeded with the demo archive
  seed?: 'demo' | 'none'; // what to seed into a fresh (empty) dataDir (default 'demo')
  latencyMs?: number; // added before every response's headers
  bandwidthBytesPerSec?: number; // per-response cap on body bytes (token bucket), 0/undefined = unlimited
  rangeSupport?: boolean; // default false: real XNAT ignores Range and sends 200 full body; true → 206 with Content-Range
  sessionIdleMs?: number; // default 15 min, sliding
  /**
   * Default: demo/demo '*', reader/reader ['OPEN']. `edit` (optional) lists projects the user may
   * write; it defaults to '*' for users who read '*' and to none otherwise.
   */
  users?: Array<{ name: string; password: string; projects: string[] | '*'; edit?: string[] | '*' }>;
}

export interface RunningEmulator {
  url: string;
  port: number;
  dataDir: string;
  close(): Promise<void>;
  setOptions(o: Partial<Pick<EmulatorOptions, 'latencyMs' | 'bandwidthBytesPerSec' | 'rangeSupport' | 'sessionIdleMs'>>): void;
  /** Fail the next `count` requests whose method+path matches: 'status500' → 500 HTML status page; 'drop' → destroy the socket mid-body (after headers and some bytes if a body exists, else before headers); 'hang' → never answer, until the client closes the connection. */
  injectFaults(f: { match: RegExp; method?: string; count: number; kind: FaultKind }): void;
  clearFaults(): void;
  expireAllSessions(): void;
  /** Request log since the last reset: method, path (with query), status (0 when no headers went out), chunked body or not. */
  requests(): LoggedRequest[];
  resetRequests(): void;
  /** Convenience for tests: absolute path on disk of a stored file, or null. */
  storedFilePath(project: string, subjectLabel: string | null, experimentLabel: string | null, scanId: string | null, resourceLabel: string, relPath: string): string | null;
  /** Add content programmatically: creates projects/subjects/experiments/scans/resources as needed and writes the file. */
  addFile(spec: {
    project: string;
    subject?: string;
    experiment?: string;
    scan?: { id: string; type: string };
    assessor?: string;
    resource: string;
    path: string;
    data: Buffer | (() => NodeJS.ReadableStream);
  }): Promise<void>;
}

export async function startEmulator(o: EmulatorOptions = {}): Promise<RunningEmulator> {
  const ownsDir = !o.dataDir;
  const dataDir = o.dataDir ? path.resolve(o.dataDir) : await mkdtemp(path.join(tmpdir(), 'xnatfs-emulator-'));
  const store = new ArchiveStore(dataDir);
  const fresh = await store.isEmpty();
  await store.load();
  if (fresh && (o.seed ?? 'demo') === 'demo') await seedDemo(store);

  const users: UserSpec[] = (o.users ?? DEMO_USERS).map((u) => ({ ...u }));
  const state: EmulatorState = {
    store,
    auth: new AuthService(users, o.sessionIdleMs ?? 15 * 60 * 1000),
    options: { latencyMs: o.latencyMs ?? 0, bandwidthBytesPerSec: o.bandwidthBytesPerSec ?? 0, rangeSupport: o.rangeSupport ?? false },
    startedAt: Date.now(),
  };
  const server = new EmulatorServer(state);
  const host = o.host ?? '127.0.0.1';
  try {
    await new Promise<void>((resolve, reject) => {
      server.http.once('error', reject);
      server.http.listen(o.port ?? 0, host, () => {
        server.http.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    // The seeded copy of the demo archive (5 MB) must not be left behind in $TMPDIR.
    if (ownsDir) await rm(dataDir, { recursive: true, force: true });
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new Error(`port ${o.port} is in use: choose another with --port`, { cause: err });
    }
    throw err;
  }
  const port = (server.http.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  server.baseUrl = url;
  log('listening on %s, data in %s', url, dataDir);

  const findOwner = (project: string, subject: string | null, experiment: string | null, scan: string | null): OwnerNode | null => {
    const p = store.projects.get(project);
    if (!p) return null;
    if (!subject) return p;
    const s = p.subjects.get(subject);
    if (!s) return null;
    if (!experiment) return s;
    const e = s.experiments.get(experiment);
    if (!e) return null;
    if (!scan) return e;
    return e.scans.get(scan) ?? null;
  };

  let closed = false;
  return {
    url,
    port,
    dataDir,
    async close() {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        server.http.close(() => resolve());
        server.http.closeAllConnections();
      });
      if (ownsDir) await rm(dataDir, { recursive: true, force: true });
    },
    setOptions(n) {
      if (n.latencyMs !== undefined) state.options.latencyMs = n.latencyMs;
      if (n.bandwidthBytesPerSec !== undefined) state.options.bandwidthBytesPerSec = n.bandwidthBytesPerSec;
      if (n.rangeSupport !== undefined) state.options.rangeSupport = n.rangeSupport;
      if (n.sessionIdleMs !== undefined) state.auth.idleMs = n.sessionIdleMs;
    },
    injectFaults(f) {
      server.faults.push({ ...f });
    },
    clearFaults() {
      server.faults = [];
    },
    expireAllSessions() {
      state.auth.expireAll();
    },
    requests(): LoggedRequest[] {
      return server.log.map((r) => ({ ...r }));
    },
    resetRequests() {
      server.log = [];
    },
    storedFilePath(project, subjectLabel, experimentLabel, scanId, resourceLabel, relPath) {
      const owner = findOwner(project, subjectLabel, experimentLabel, scanId);
      const res = owner?.resources.get(resourceLabel);
      if (!res || !res.files.has(relPath)) return null;
      return store.filePath(res, relPath);
    },
    async addFile(spec) {
      const p = await store.ensureProject(spec.project);
      let owner: OwnerNode = p;
      if (spec.subject) {
        const s = await store.ensureSubject(p, spec.subject);
        owner = s;
        if (spec.experiment) {
          const e = await store.ensureExperiment(s, spec.experiment);
          owner = e;
          if (spec.scan) owner = await store.ensureScan(e, spec.scan.id, { type: spec.scan.type });
          else if (spec.assessor) owner = await store.ensureAssessor(e, spec.assessor);
        }
      } else if (spec.experiment || spec.scan || spec.assessor) {
        throw new Error('addFile: experiment/scan/assessor need a subject');
      }
      const res = owner.resources.get(spec.resource) ?? (await store.createResource(owner, spec.resource));
      const t = store.tempSink();
      if (Buffer.isBuffer(spec.data)) t.sink.end(spec.data);
      else (spec.data() as Readable).pipe(t.sink);
      await store.commitFile(res, spec.path, await t.done, { overwrite: true });
    },
  };
}
