// Client and session behaviour against the project's XNAT emulator (a real HTTP server).
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { file as tmpFile } from 'tmp-promise';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { createXnatClient } from '../../src/xnat/client.js';
import { emulatorWithClients } from '../helpers/emulator-clients.js';
import { USER_AGENT } from '../../src/xnat/http.js';
import { XnatError, type Owner } from '../../src/xnat/types.js';

const suite = emulatorWithClients((url) => ({ baseUrl: `${url}/` }));
const client = suite.client;

const logins = () => suite.emu.requests().filter((r) => r.url.startsWith('/data/JSESSION') && r.method !== 'DELETE').length;

/** Headers of every request undici sends in this process. */
function captureHeaders(): { list: Array<{ path: string; headers: string }>; stop: () => void } {
  const list: Array<{ path: string; headers: string }> = [];
  const onCreate = (msg: unknown) => {
    const r = (msg as { request: { path: string; headers: unknown } }).request;
    const h = Array.isArray(r.headers) ? r.headers.join('\n') : String(r.headers);
    list.push({ path: r.path, headers: h.toLowerCase() });
  };
  subscribe('undici:request:create', onCreate);
  return { list, stop: () => unsubscribe('undici:request:create', onCreate) };
}

const scanOwner: Owner = { level: 'scan', project: 'DEMO', experiment: 'XNAT_E00001', scan: '4' };

describe('XNAT client against the emulator', () => {
  it('logs in once, then sends only the cookie; lists the demo archive', async () => {
    suite.emu.resetRequests();
    const cap = captureHeaders();
    const c = await client();
    try {
      const projects = await c.listProjects();
      expect(projects.map((p) => p.id)).toContain('DEMO');
      const subjects = await c.listSubjects('DEMO');
      const subj = subjects.find((s) => s.label === 'SUBJ01');
      expect(subj?.id).toMatch(/^XNAT_S/);
      const exps = await c.listExperiments('DEMO');
      const mr1 = exps.find((e) => e.label === 'SUBJ01_MR1')!;
      expect(mr1).toMatchObject({ id: 'XNAT_E00001', project: 'DEMO' });
      expect(exps.every((e) => !/assessor|fs:|qc/i.test(e.xsiType))).toBe(true);
      const ofSubject = await c.listExperiments('DEMO', subj!.id);
      expect(ofSubject.find((e) => e.label === 'SUBJ01_MR1')).toMatchObject({ subjectId: subj!.id });
      const scans = await c.listScans('DEMO', mr1.id);
      expect(scans.find((s) => s.id === '4')).toMatchObject({ type: 'Ax 3D T1' });
      expect((await c.listAssessors('DEMO', mr1.id)).map((a) => a.label)).toContain('SUBJ01_MR1_FS');
      const res = await c.listResources(scanOwner);
      const dicom = res.find((r) => r.label === 'DICOM')!;
      expect(dicom.id).toMatch(/^\d+$/);
      expect(dicom.fileCount).toBeGreaterThan(0);
      const files = await c.listFiles(scanOwner, 'DICOM');
      expect(files.length).toBeGreaterThan(0);
      expect(files[0]).toMatchObject({ resourceLabel: 'DICOM', resourceId: dicom.id });
      expect(files[0]!.size).toBeGreaterThan(0);
      const all = await c.listAllScanFiles('DEMO', mr1.id);
      expect(all.filter((f) => f.scan === '4' && f.resourceLabel === 'DICOM').map((f) => f.path).sort()).toEqual(files.map((f) => f.path).sort());
      expect(new Set(all.map((f) => f.scan))).toEqual(new Set(scans.map((s) => s.id)));
      // ?all=true: the experiment's own resources and each scan's, marked with what they hang on
      const scoped = await c.listAllResources('DEMO', mr1.id);
      expect(scoped.filter((r) => r.category === 'scans' && r.catId === '4').map(({ category: _c, catId: _i, ...r }) => r)).toEqual(res);
      expect(scoped.some((r) => r.category === 'resources' && r.label === 'NOTES')).toBe(true);
      // project-wide experiments carry subject_ID when asked for (a subject's are sliced from them)
      expect(exps.find((e) => e.label === 'SUBJ01_MR1')).toMatchObject({ subjectId: subj!.id });
      expect((await c.listResources({ level: 'project', project: 'DEMO' })).map((r) => r.label)).toContain('protocols');
      expect((await c.listResources({ level: 'subject', project: 'DEMO', subject: subj!.id })).map((r) => r.label)).toContain('CONSENT');
    } finally {
      cap.stop();
    }
    expect(logins()).toBe(1);
    const sent = cap.list.filter((r) => !r.path.includes('/data/JSESSION'));
    expect(sent.length).toBeGreaterThan(10);
    for (const r of sent) {
      expect(r.headers).not.toContain('authorization');
      expect(r.headers).toContain('jsessionid=');
      expect(r.headers).toContain(USER_AGENT.toLowerCase());
    }
  });

  it('re-logs in once after the sessions expire, for many concurrent requests', async () => {
    const c = await client();
    await c.listProjects();
    suite.emu.expireAllSessions();
    suite.emu.resetRequests();
    const results = await Promise.all(Array.from({ length: 20 }, () => c.listSubjects('DEMO')));
    expect(results.every((r) => r.length > 0)).toBe(true);
    expect(logins()).toBe(1);
    expect(c.logins).toBe(2);
  });

  it('reports a wrong password as one unauthorized line naming server and user', async () => {
    suite.emu.resetRequests();
    const err = await createXnatClient({
      baseUrl: suite.emu.url,
      credentials: { kind: 'password', user: 'demo', password: 'wrong-secret', userSource: 'env', passwordSource: 'env' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XnatError);
    const e = err as XnatError;
    expect(e.kind).toBe('unauthorized');
    expect(e.message).toContain(suite.emu.url);
    expect(e.message).toContain("'demo'");
    expect(e.message).toContain('XNAT_USER/XNAT_PASS');
    expect(e.message).not.toContain('wrong-secret');
    expect(e.message).not.toContain('\n');
    expect(logins()).toBe(1);
  });

  it('logs in with an alias token as user/password', async () => {
    const auth = `Basic ${Buffer.from('demo:demo').toString('base64')}`;
    const r = await request(`${suite.emu.url}/data/services/tokens/issue`, { headers: { authorization: auth, 'user-agent': USER_AGENT } });
    const token = (await r.body.json()) as { alias: string; secret: string };
    const c = await client({
      credentials: { kind: 'password', user: token.alias, password: token.secret, userSource: 'env', passwordSource: 'env' },
    });
    expect((await c.listProjects()).map((p) => p.id)).toContain('DEMO');
  });

  it('reads credentials from the environment', async () => {
    const c = await client({ credentials: undefined, env: { XNAT_USER: 'reader', XNAT_PASS: 'reader' }, interactive: false });
    expect(c.authDescription).toBe("user 'reader' (from environment)");
    expect((await c.listProjects()).map((p) => p.id)).not.toContain('DEMO');
  });

  it('works with --jsession and says how to recover when it expires', async () => {
    const auth = `Basic ${Buffer.from('demo:demo').toString('base64')}`;
    const r = await request(`${suite.emu.url}/data/JSESSION`, { method: 'POST', headers: { authorization: auth, 'user-agent': USER_AGENT } });
    const id = (await r.body.text()).trim();
    const c = await client({ credentials: undefined, jsession: id });
    expect((await c.listProjects()).length).toBeGreaterThan(0);
    suite.emu.expireAllSessions();
    const err = (await c.listProjects().catch((e: unknown) => e)) as XnatError;
    expect(err.kind).toBe('unauthorized');
    expect(err.message).toMatch(/--jsession has expired.*XNAT_USER\/XNAT_PASS/);
    expect(err.message).not.toContain(id);
  });

  it('refuses an invalid or expired --jsession at start, before any listing', async () => {
    suite.emu.resetRequests();
    const err = (await client({ credentials: undefined, jsession: 'NOT-A-SESSION' }).catch((e: unknown) => e)) as XnatError;
    expect(err).toBeInstanceOf(XnatError);
    expect(err.kind).toBe('unauthorized');
    expect(err.message).toMatch(/--jsession has expired or is not valid/);
    expect(err.message).not.toContain('NOT-A-SESSION');
    expect(suite.emu.requests().map((r) => `${r.method} ${r.url} ${r.status}`)).toEqual(['GET /data/auth 401']);
  });

  it('refuses a --jsession that a site open to guests answers as the guest user', async () => {
    // XNAT with guest access answers /data/auth for an unknown session as the guest, not 401.
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(req.url === '/data/auth' ? "User 'guest' is logged in" : '{"ResultSet":{"Result":[]}}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const err = (await createXnatClient({ baseUrl, jsession: 'OLD-SESSION' }).catch((e: unknown) => e)) as XnatError;
      expect(err).toBeInstanceOf(XnatError);
      expect(err.kind).toBe('unauthorized');
      expect(err.message).toMatch(/--jsession has expired or is not valid/);
    } finally {
      server.close();
    }
  });

  it('retries GETs on injected 500s and dropped connections', async () => {
    const c = await client();
    suite.emu.resetRequests();
    suite.emu.injectFaults({ match: /\/data\/projects\/DEMO\/subjects\?/, count: 2, kind: 'status500' });
    expect((await c.listSubjects('DEMO')).length).toBeGreaterThan(0);
    expect(suite.emu.requests().filter((r) => r.url.includes('/subjects?')).map((r) => r.status)).toEqual([500, 500, 200]);

    suite.emu.resetRequests();
    suite.emu.injectFaults({ match: /\/scans\?/, count: 2, kind: 'drop' });
    expect((await c.listScans('DEMO', 'XNAT_E00001')).length).toBeGreaterThan(0);
    expect(suite.emu.requests().filter((r) => r.url.includes('/scans?')).length).toBe(3);
  });

  it('gives up after bounded retries with a server error that says what happened', async () => {
    const c = await client();
    suite.emu.injectFaults({ match: /\/data\/projects\?/, count: 10, kind: 'status500' });
    const err = (await c.listProjects().catch((e: unknown) => e)) as XnatError;
    expect(err.kind).toBe('server');
    expect(err.status).toBe(500);
    expect(err.message).toContain('injected fault');
  });

  it('maps 404 and 403 answers', async () => {
    const c = await client({
      credentials: { kind: 'password', user: 'reader', password: 'reader', userSource: 'option', passwordSource: 'option' },
    });
    const e404 = (await c.listFiles(scanOwner, 'NOPE').catch((e: unknown) => e)) as XnatError;
    expect(e404).toBeInstanceOf(XnatError);
    expect(['not-found', 'forbidden']).toContain(e404.kind);
    const e403 = (await c.listSubjects('DEMO').catch((e: unknown) => e)) as XnatError;
    expect(['forbidden', 'not-found']).toContain(e403.kind);
  });

  it('reads a file whole, and with Range when the server honours it', async () => {
    const c = await client();
    const [f] = await c.listFiles(scanOwner, 'DICOM');
    const ref = { owner: scanOwner, resource: 'DICOM', path: f!.path, size: f!.size, digest: f!.digest, uri: f!.uri };
    const whole = await c.readFile(ref);
    expect(whole.status).toBe(200);
    expect(whole.totalSize).toBe(f!.size);
    expect(whole.lastModified).toBeInstanceOf(Date);
    const bytes = await buffer(whole.body);
    expect(bytes.length).toBe(f!.size);

    const ignored = await c.readFile(ref, { start: 100, end: 200 });
    expect(ignored.status).toBe(200); // real XNAT ignores Range
    expect(ignored.start).toBe(0);
    ignored.body.destroy();

    suite.emu.setOptions({ rangeSupport: true });
    try {
      const part = await c.readFile({ ...ref, uri: undefined }, { start: 100, end: 200 });
      expect(part).toMatchObject({ status: 206, start: 100, totalSize: f!.size });
      expect(await buffer(part.body)).toEqual(bytes.subarray(100, 200));
    } finally {
      suite.emu.setOptions({ rangeSupport: false });
    }
  });

  it('streams a resource zip', async () => {
    const c = await client();
    const zip = await buffer(await c.downloadResourceZip(scanOwner, 'DICOM'));
    expect(zip.subarray(0, 2).toString()).toBe('PK');
  });

  it('creates resources, uploads from disk, reports duplicates, overwrites and deletes', async () => {
    const c = await client();
    const owner: Owner = { level: 'experiment', project: 'DEMO', experiment: 'XNAT_E00001' };
    const label = `T${randomBytes(3).toString('hex')}`;
    await c.createResource(owner, label);
    const again = (await c.createResource(owner, label).catch((e: unknown) => e)) as XnatError;
    expect(again.kind).toBe('conflict');

    const tmp = await tmpFile();
    try {
      const data = randomBytes(3 * 1024 * 1024 + 7);
      await writeFile(tmp.path, data);
      const names = ['sub dir/a+b #1.bin', 'plain.bin', "it's (1).bin", 'top#level.bin'];
      for (const name of names) await c.uploadFile(owner, label, name, { overwrite: false, sourcePath: tmp.path, size: data.length });
      const listed = await c.listFiles(owner, label);
      expect(listed.map((f) => f.path).sort()).toEqual([...names].sort());
      expect(listed.every((f) => f.size === data.length)).toBe(true);
      for (const f of listed) {
        const r = await c.readFile({ owner, resource: label, path: f.path, size: f.size, digest: f.digest });
        expect((await buffer(r.body)).equals(data)).toBe(true);
      }

      const dup = (await c
        .uploadFile(owner, label, 'sub dir/a+b #1.bin', { overwrite: false, sourcePath: tmp.path, size: data.length })
        .catch((e: unknown) => e)) as XnatError;
      expect(dup.kind).toBe('duplicate');

      const small = Buffer.from('replaced');
      await writeFile(tmp.path, small);
      await c.uploadFile(owner, label, 'sub dir/a+b #1.bin', { overwrite: true, sourcePath: tmp.path, size: small.length });
      const r = await c.readFile({ owner, resource: label, path: 'sub dir/a+b #1.bin', size: small.length, digest: '' });
      expect((await buffer(r.body)).toString()).toBe('replaced');

      const bad = (await c
        .uploadFile(owner, label, 'sub/hash#only.bin', { overwrite: false, sourcePath: tmp.path, size: small.length })
        .catch((e: unknown) => e)) as XnatError;
      expect(bad.kind).toBe('bad-request');

      await c.deleteFile(owner, label, 'plain.bin');
      const gone = (await c.deleteFile(owner, label, 'plain.bin').catch((e: unknown) => e)) as XnatError;
      expect(gone.kind).toBe('not-found');
      await c.deleteFile(owner, label, 'sub dir');
      expect((await c.listFiles(owner, label)).map((f) => f.path).sort()).toEqual(["it's (1).bin", 'top#level.bin']);
      await c.deleteResource(owner, label);
      expect((await c.listResources(owner)).map((x) => x.label)).not.toContain(label);
    } finally {
      await tmp.cleanup();
    }
  });

  it('uploads a body that is still being produced (chunked); one cut short stores nothing and keeps the old file', async () => {
    const c = await client();
    const owner: Owner = { level: 'experiment', project: 'DEMO', experiment: 'XNAT_E00001' };
    const label = `S${randomBytes(3).toString('hex')}`;
    const parts = [randomBytes(300_000), randomBytes(5), randomBytes(1_000_000)];
    async function* slowly(fail: boolean): AsyncGenerator<Buffer> {
      for (const p of parts) {
        await new Promise((r) => setTimeout(r, 20));
        yield p;
      }
      if (fail) throw new Error('the writer went away');
    }
    await c.uploadFile(owner, label, 'grown.bin', { overwrite: false, stream: () => slowly(false) });
    const put = suite.emu.requests().filter((r) => r.method === 'PUT' && r.url.includes('grown.bin')).at(-1)!;
    expect(put.chunked).toBe(true);
    const [f] = await c.listFiles(owner, label);
    const got = await buffer((await c.readFile({ owner, resource: label, path: 'grown.bin', size: f!.size, digest: f!.digest })).body);
    expect(got.equals(Buffer.concat(parts))).toBe(true);

    // Cut short by the body's own failure, then by an abort: XNAT keeps what it had.
    const err = await c.uploadFile(owner, label, 'grown.bin', { overwrite: true, stream: () => slowly(true) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error('abandoned')), 30);
    const aborted = await c.uploadFile(owner, label, 'grown.bin', { overwrite: true, stream: () => slowly(false), signal: abort.signal }).catch((e: unknown) => e);
    expect(aborted).toBeInstanceOf(Error);
    await c.uploadFile(owner, label, 'fresh.bin', { overwrite: false, stream: () => slowly(true) }).catch(() => undefined);
    const listed = await c.listFiles(owner, label);
    expect(listed.map((x) => x.path)).toEqual(['grown.bin']);
    expect(listed[0]!.size).toBe(Buffer.concat(parts).length);
    await c.deleteResource(owner, label);
  });

  it('refuses a file delete that XNAT would widen to prefix siblings', async () => {
    const c = await client();
    const owner: Owner = { level: 'project', project: 'DEMO' };
    const label = `P${randomBytes(3).toString('hex')}`;
    const tmp = await tmpFile();
    try {
      await writeFile(tmp.path, 'x');
      for (const n of ['a', 'ab.txt']) await c.uploadFile(owner, label, n, { overwrite: false, sourcePath: tmp.path, size: 1 });
      const err = (await c.deleteFile(owner, label, 'a').catch((e: unknown) => e)) as XnatError;
      expect(err.kind).toBe('conflict');
      expect(err.message).toContain('ab.txt');
      expect(err.message).not.toContain(`'${label}'`); // nor its numeric id: the fs layer names the path
      await c.deleteFile(owner, label, 'ab.txt');
      await c.deleteFile(owner, label, 'a');
      expect(await c.listFiles(owner, label).catch(() => [])).toEqual([]);
      await c.deleteResource(owner, label);
    } finally {
      await tmp.cleanup();
    }
  });

  it('logs out on close', async () => {
    const c = await createXnatClient({
      baseUrl: suite.emu.url,
      credentials: { kind: 'password', user: 'demo', password: 'demo', userSource: 'option', passwordSource: 'option' },
    });
    suite.emu.resetRequests();
    await c.close();
    expect(suite.emu.requests()).toEqual([{ method: 'DELETE', url: '/data/JSESSION', status: 200, chunked: false }]);
  });
});

describe('a server host that DNS does not know', () => {
  const notFound = async (): Promise<never> => {
    throw Object.assign(new Error('getaddrinfo ENOTFOUND xnat.invalid'), { code: 'ENOTFOUND' });
  };

  it('is said before the credentials are looked for: "check the URL", not "no credentials"', async () => {
    const looked: string[] = [];
    const err = (await createXnatClient({
      baseUrl: 'https://xnat.invalid/',
      env: {},
      netrcFile: '/nonexistent/netrc',
      interactive: false,
      lookupHost: async (host) => {
        looked.push(host);
        return notFound();
      },
    }).catch((e: unknown) => e)) as XnatError;
    expect(looked).toEqual(['xnat.invalid']);
    expect(err).toBeInstanceOf(XnatError);
    expect(err.message).toBe('the host of https://xnat.invalid was not found (ENOTFOUND): check the URL');
  });

  it('other DNS trouble (no resolver) is left to the first request; an IP address is not looked up', async () => {
    const unreachable = async (): Promise<never> => {
      throw Object.assign(new Error('getaddrinfo EAI_AGAIN'), { code: 'EAI_AGAIN' });
    };
    const a = (await createXnatClient({ baseUrl: 'https://xnat.example.org', env: {}, netrcFile: '/nonexistent/netrc', interactive: false, lookupHost: unreachable }).catch((e: unknown) => e)) as Error;
    expect(a.message).toMatch(/^no credentials for xnat\.example\.org/);
    const b = (await createXnatClient({ baseUrl: 'http://[::1]:9', env: {}, netrcFile: '/nonexistent/netrc', interactive: false, lookupHost: notFound }).catch((e: unknown) => e)) as Error;
    expect(b.message).toMatch(/^no credentials for/);
  });
});
