// A server that stops answering (kill -STOP, every Tomcat thread stuck): reads fail within the
// headers timeout instead of queueing behind prefetches, queued prefetches are dropped, and
// closing the client (unmount) does not wait for the server. Short timeouts keep it in seconds.
import { describe, expect, it } from 'vitest';
import { constants } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { FsError } from '../../src/fs/errors.js';
import { createStack } from '../../src/fs/stack.js';
import { createXnatClient, uploadAnswerTimeoutMs } from '../../src/xnat/client.js';
import { emulatorWithClients } from '../helpers/emulator-clients.js';
import { HttpClient } from '../../src/xnat/http.js';
import { XnatError, type FileRef, type Owner } from '../../src/xnat/types.js';

const HEADERS_MS = 500;
/** undici runs its timeouts on a coarse clock (up to a second late); 60 s in real use. */
const BOUND_MS = HEADERS_MS + 1_300;

const suite = emulatorWithClients(() => ({ timeouts: { headersMs: HEADERS_MS, logoutMs: 300 } }));
const client = suite.client;

const owner: Owner = { level: 'scan', project: 'DEMO', experiment: 'XNAT_E00001', scan: '4' };
const file = (n: number): FileRef => ({ owner, resource: 'DICOM', path: `SUBJ01_MR1.MR.4.${String(n).padStart(4, '0')}.dcm`, size: 1, digest: '' });
const hangFiles = (): void => suite.emu.injectFaults({ match: /\.dcm$/, method: 'GET', count: 1000, kind: 'hang' });
const sentFiles = (): number => suite.emu.requests().filter((r) => r.url.endsWith('.dcm')).length;

/** How long `p` took to settle, and its error. */
async function timed(p: Promise<unknown>): Promise<{ ms: number; err: unknown }> {
  const t0 = performance.now();
  const err = await p.then(() => null, (e: unknown) => e);
  return { ms: performance.now() - t0, err };
}

describe('a server that does not answer', () => {
  it('fails a read after one headers timeout, not behind the prefetches that hold the connections', async () => {
    const c = await client({ maxConcurrency: 4 });
    hangFiles();
    const prefetches = Array.from({ length: 8 }, (_, i) => timed(c.readFile(file(i + 1), { background: true })));
    await new Promise((r) => setTimeout(r, 50));
    const read = await timed(c.readFile(file(20)));
    expect(read.err).toBeInstanceOf(XnatError);
    expect((read.err as XnatError).timedOut).toBe(true);
    expect((read.err as XnatError).message).toMatch(/did not answer GET .*0020\.dcm within 0\.5 s .*not responding; try again later/);
    // Sent at once on a slot kept free of prefetches, and not tried again.
    expect(read.ms).toBeLessThan(BOUND_MS);
    for (const p of await Promise.all(prefetches)) expect((p.err as XnatError).timedOut).toBe(true);
  });

  it('drops queued prefetches once nothing was answered for a whole headers timeout, and refuses new ones', async () => {
    const c = await client({ maxConcurrency: 4 });
    hangFiles();
    suite.emu.resetRequests();
    const t0 = performance.now();
    const all = await Promise.all(Array.from({ length: 10 }, (_, i) => timed(c.readFile(file(i + 1), { background: true }))));
    const ms = performance.now() - t0;
    expect(all.every((r) => r.err instanceof XnatError && r.err.timedOut)).toBe(true);
    // 3 in flight (a slot stays free for reads), 7 queued: all gone with the first timeouts.
    expect(ms).toBeLessThan(BOUND_MS);
    expect(sentFiles()).toBe(3);
    const later = await timed(c.readFile(file(11), { background: true }));
    expect(later.ms).toBeLessThan(100);
    expect((later.err as XnatError).message).toMatch(/has answered no request for 0\.5 s.*prefetch of GET .* skipped/);
    expect(sentFiles()).toBe(3);
    // A read a program waits for is still sent; once XNAT answers, prefetches go again.
    suite.emu.clearFaults();
    const ok = await c.readFile(file(1));
    ok.body.resume();
    const pre = await c.readFile(file(2), { background: true });
    pre.body.resume();
    expect(pre.status).toBe(200);
  });

  it('keeps the last slots for reads even while uploads or listings hold others', async () => {
    const c = await client({ maxConcurrency: 4 });
    hangFiles();
    // One request a program waits on, then prefetches: they may not take the last free slot.
    const reads = [timed(c.readFile(file(1)))];
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 2; i <= 4; i++) reads.push(timed(c.readFile(file(i), { background: true })));
    await new Promise((r) => setTimeout(r, 50));
    const listing = await timed(c.listProjects());
    expect(listing.err).toBeNull();
    expect(listing.ms).toBeLessThan(300);
    await Promise.all(reads);
  });

  it('slow bodies holding every slot are not silence: prefetch is not dropped', async () => {
    // Headers at once, then a body trickling in for 1.5 s: three headers timeouts.
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      if (req.url !== '/slow') return void res.end('ok');
      let n = 0;
      const t = setInterval(() => (++n === 15 ? (clearInterval(t), res.end('.')) : res.write('.')), 100);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const http = await HttpClient.create({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, maxConcurrency: 2, timeouts: { headersMs: HEADERS_MS } });
    try {
      const slow = [timed(http.requestText({ method: 'GET', path: '/slow' })), timed(http.requestText({ method: 'GET', path: '/slow' }))];
      await new Promise((r) => setTimeout(r, 50));
      const queued = await timed(http.requestText({ method: 'GET', path: '/ok' }));
      expect((queued.err as Error).message).toMatch(/all 2 connections stayed busy with earlier requests/);
      for (const r of await Promise.all(slow)) expect(r.err).toBeNull();
      expect(http.unresponsive).toBe(false);
      const pre = await http.requestText({ method: 'GET', path: '/ok', background: true });
      expect(pre.text).toBe('ok');
    } finally {
      await http.close();
      server.close();
    }
  });

  it('counts the wait for a connection slot toward the headers timeout', async () => {
    const c = await client({ maxConcurrency: 2 });
    hangFiles();
    suite.emu.resetRequests();
    const t0 = performance.now();
    const all = await Promise.all(Array.from({ length: 6 }, (_, i) => timed(c.readFile(file(i + 1)))));
    // Without it, three rounds of 0.5 s (each request's clock starting only once it is sent).
    expect(performance.now() - t0).toBeLessThan(BOUND_MS);
    expect(all.every((r) => r.err instanceof XnatError && r.err.timedOut)).toBe(true);
    const queued = all.filter((r) => /all 2 connections stayed busy/.test((r.err as Error).message));
    expect(queued).toHaveLength(4);
    expect(sentFiles()).toBe(2);
  });

  it('gives XNAT longer to answer a large upload once its body is sent (it stores and hashes it first)', async () => {
    // Answers an upload 1.5 s after its last byte: three usual headers timeouts here.
    const server = createServer((req, res) => {
      if (req.method !== 'PUT') return void res.writeHead(200, { 'content-type': 'text/plain' }).end(`User 'demo' is logged in`);
      req.resume();
      req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(''), 1_500));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const dir = await mkdtemp(join(homedir(), '.xnatfs-test-upload-'));
    const c = await createXnatClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, credentials: { kind: 'jsession', jsession: 'X', source: 'option' }, timeouts: { headersMs: HEADERS_MS, logoutMs: 300 } });
    try {
      const size = 50e6; // 3 s at 20 MB/s of answer time
      expect(uploadAnswerTimeoutMs(size, HEADERS_MS)).toBe(3_000);
      expect(uploadAnswerTimeoutMs(1000, 60_000)).toBe(60_000);
      const src = join(dir, 'big.nii');
      await writeFile(src, Buffer.alloc(size, 7));
      const up = await timed(c.uploadFile({ level: 'project', project: 'P' }, 'R', 'big.nii', { overwrite: true, sourcePath: src, size }));
      expect(up.err).toBeNull();
      expect(up.ms).toBeGreaterThan(1_400);
    } finally {
      await c.close();
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('bounds the logout at close, and does not wait for requests left unanswered', async () => {
    const c = await createXnatClient({
      baseUrl: suite.emu.url,
      credentials: { kind: 'password', user: 'demo', password: 'demo', userSource: 'option', passwordSource: 'option' },
      timeouts: { headersMs: 20_000, logoutMs: 300 },
    });
    suite.emu.injectFaults({ match: /./, count: 1000, kind: 'hang' });
    const listing = timed(c.listProjects());
    await new Promise((r) => setTimeout(r, 50));
    const closing = await timed(c.close());
    expect(closing.err).toBeNull();
    // 0.3 s of logout, then at most a second of grace for the listing still in flight.
    expect(closing.ms).toBeLessThan(2_500);
    const l = await listing;
    expect(l.err).toBeTruthy();
    expect(l.ms).toBeLessThan(3_000);
    expect(suite.emu.requests().some((r) => r.method === 'DELETE' && r.url === '/data/JSESSION')).toBe(true);
  });
});

describe('reading through the fs layer while the server hangs (the QA report)', () => {
  const DICOM = '/projects/DEMO/subjects/SUBJ01/experiments/SUBJ01_MR1/scans/4-Ax_3D_T1/resources/DICOM/files';

  it('fails the read with EIO and one clear message after one headers timeout, then recovers', async () => {
    const c = await client({ maxConcurrency: 8 });
    const cacheDir = await mkdtemp(join(homedir(), '.xnatfs-test-cache-'));
    const fs = await createStack(c, {
      cacheDir, cacheBytes: 1 << 28, listingTtlMs: 60_000, readOnly: true, uploadConcurrency: 2,
      // File by file, 12 at once: the folder's prefetch fills every connection it may.
      prefetch: { enabled: true, concurrency: 12, zipMinFiles: 10_000 },
    });
    try {
      const names = (await fs.ops.readdir!(DICOM)).names.filter((n) => n.endsWith('.dcm'));
      expect(names.length).toBeGreaterThan(20);
      hangFiles();
      const path = `${DICOM}/${names[1]}`;
      const t0 = performance.now();
      const err = await (async () => {
        const fd = await fs.ops.open!(path, constants.O_RDONLY);
        return Promise.resolve(fs.ops.read!(path, fd, Buffer.alloc(1 << 20), 1 << 20, 0)).then(() => null, (e: unknown) => e);
      })();
      const ms = performance.now() - t0;
      expect(err).toBeInstanceOf(FsError);
      expect((err as FsError).code).toBe('EIO');
      expect((err as FsError).message).toMatch(/^reading .*: XNAT at .* did not answer GET .* within 0\.5 s .*try again later$/);
      // Before: five attempts, each queued behind the prefetches' own timeouts.
      expect(ms).toBeLessThan(BOUND_MS);
      // The server answers again: so does the mount.
      suite.emu.clearFaults();
      const fd = await fs.ops.open!(path, constants.O_RDONLY);
      const n = await fs.ops.read!(path, fd, Buffer.alloc(1 << 20), 1 << 20, 0);
      expect(n).toBeGreaterThan(0);
      await fs.ops.release!(path, fd);
    } finally {
      await fs.shutdown(1000);
      await rm(cacheDir, { recursive: true, force: true });
    }
  });
});
