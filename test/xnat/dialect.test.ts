// The client against canned answers a real XNAT may give within its documented dialect
// (../shared/xnat-api.md) but the emulator does not produce.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { createXnatClient, type XnatClient } from '../../src/xnat/client.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

const open: Array<{ close: () => Promise<void> }> = [];
afterEach(async () => {
  while (open.length) await open.pop()!.close();
});

/** A fake XNAT: /data/JSESSION logs in (counted), everything else goes to `handler`. */
async function fakeXnat(handler: Handler): Promise<{ client: XnatClient; logins: () => number }> {
  let logins = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url?.startsWith('/data/JSESSION')) {
        if (req.method !== 'DELETE') logins++;
        res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': 'JSESSIONID=ABCDEF0123456789; Path=/; HttpOnly' });
        res.end(req.method === 'DELETE' ? '' : 'ABCDEF0123456789');
        return;
      }
      handler(req, res, Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = await createXnatClient({
    baseUrl,
    credentials: { kind: 'password', user: 'demo', password: 'demo', userSource: 'option', passwordSource: 'option' },
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
  });
  open.push({ close: () => new Promise<void>((r) => server.close(() => r())) });
  open.push({ close: () => client.close() });
  return { client, logins: () => logins };
}

describe('XNAT dialect variants the emulator does not produce', () => {
  it('reads an HTML file XNAT renders inline (allowHtmlResourceRendering) even if it holds a login form', async () => {
    // xnat-api.md §2.6: files get Content-Disposition: attachment only while the pref
    // allowHtmlResourceRendering is false; with it on, an .html file comes as plain text/html.
    const page =
      '<!DOCTYPE html><html><head><title>QC report</title></head><body><h1>QC</h1>' +
      '<form action="/app/action/XDATLoginUser" method="post"><input type="text" name="username">' +
      '<input type="password" name="password"><input type="submit" value="Login"></form></body></html>\n';
    const { client, logins } = await fakeXnat((req, res) => {
      if (req.url === '/data/experiments/XNAT_E00001/resources/77/files/qc/report.html') {
        res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'must-revalidate', 'content-length': Buffer.byteLength(page) });
        res.end(page);
      } else {
        res.writeHead(404, { 'content-type': 'text/html' });
        res.end('');
      }
    });
    const got = await client.readFile({
      owner: { level: 'experiment', project: 'P', experiment: 'XNAT_E00001' },
      resource: '77',
      path: 'qc/report.html',
      size: Buffer.byteLength(page),
      digest: '',
      uri: '/data/experiments/XNAT_E00001/resources/77/files/qc/report.html',
    });
    expect((await buffer(got.body)).toString('utf8')).toBe(page);
    expect(logins()).toBe(1);
  });

  it('logs in again before XNAT drops an idle session, so a site open to guests never serves the guest view', async () => {
    // A site that lets guests in answers an expired JSESSIONID as the guest user: 200, public
    // projects only. SESSION_EXPIRATION_TIME ("<ms>,<timeout>", xnat-api.md §2.10) gives the timeout.
    const IDLE_MS = 400;
    const { client, logins, guestAnswers } = await guestXnat(IDLE_MS);
    expect((await client.listProjects()).map((p) => p.id)).toEqual(['PUBLIC', 'PRIVATE']);
    await new Promise((r) => setTimeout(r, IDLE_MS + 150));
    expect((await client.listProjects()).map((p) => p.id)).toEqual(['PUBLIC', 'PRIVATE']);
    expect(guestAnswers()).toBe(0);
    expect(logins()).toBe(2);
  });
});

/**
 * A site open to guests: an unknown or idle-expired JSESSIONID is served as the guest user (200,
 * public projects only, a new JSESSIONID), never 401. As in the emulator, a session's idle clock
 * restarts when a request arrives. `restart()` forgets every session, as an XNAT restart does.
 */
async function guestXnat(idleMs: number): Promise<{ client: XnatClient; logins: () => number; guestAnswers: () => number; restart: () => void }> {
  const sessions = new Map<string, number>();
  let logins = 0;
  let guestAnswers = 0;
  const server = createServer((req, res) => {
    const cookie = /JSESSIONID=(\w+)/.exec(req.headers.cookie ?? '')?.[1];
    const last = cookie ? sessions.get(cookie) : undefined;
    const valid = last !== undefined && Date.now() - last <= idleMs;
    if (valid) sessions.set(cookie!, Date.now());
    req.resume();
    req.on('end', () => {
      const expiry = `SESSION_EXPIRATION_TIME="${Date.now()},${idleMs}"; Path=/`;
      if (req.url?.startsWith('/data/JSESSION')) {
        if (req.method === 'DELETE') return void res.end('');
        logins++;
        const id = `S${logins}x0123456789`;
        sessions.set(id, Date.now());
        res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': [`JSESSIONID=${id}; Path=/; HttpOnly`, expiry] });
        return void res.end(id);
      }
      const cookies = valid ? [expiry] : [`JSESSIONID=GUEST${guestAnswers}x0123456789; Path=/; HttpOnly`, expiry];
      if (!valid) guestAnswers++;
      if (req.method === 'PUT') {
        res.writeHead(valid ? 200 : 403, { 'content-type': 'text/plain', 'set-cookie': cookies });
        return void res.end('');
      }
      const rows = [{ ID: 'PUBLIC', name: 'Public', secondary_ID: '', description: '', URI: '/data/projects/PUBLIC' }];
      if (valid) rows.push({ ID: 'PRIVATE', name: 'Private', secondary_ID: '', description: '', URI: '/data/projects/PRIVATE' });
      res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': cookies });
      res.end(JSON.stringify({ ResultSet: { Result: rows, totalRecords: String(rows.length) } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  open.push({ close: () => new Promise<void>((r) => server.close(() => r())) });
  const client = await createXnatClient({
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    credentials: { kind: 'password', user: 'demo', password: 'demo', userSource: 'option', passwordSource: 'option' },
  });
  open.push({ close: () => client.close() });
  return { client, logins: () => logins, guestAnswers: () => guestAnswers, restart: () => sessions.clear() };
}

describe('a site open to guests', () => {
  it('counts the idle time from when a request was sent: after an upload longer than the timeout, the next request logs in first', async () => {
    const IDLE_MS = 400;
    const { client, logins, guestAnswers } = await guestXnat(IDLE_MS);
    await client.uploadFile({ level: 'project', project: 'PRIVATE' }, 'R', 'slow.bin', {
      overwrite: true,
      stream: async function* () {
        yield Buffer.from('first');
        await new Promise((r) => setTimeout(r, IDLE_MS + 150));
        yield Buffer.from('last');
      },
    });
    expect((await client.listProjects()).map((p) => p.id)).toEqual(['PUBLIC', 'PRIVATE']);
    expect(guestAnswers()).toBe(0);
    expect(logins()).toBe(2);
  });
});

describe('a site open to guests, when XNAT forgets the session before its idle timeout', () => {
  it('takes a new JSESSIONID in an answer for a lost session: logs in again instead of keeping the guest\'s', async () => {
    // After an XNAT restart (or a session ended by an admin, or a request answered after the
    // proactive login replaced its session) the answer comes as the guest, with the guest's
    // JSESSIONID. Kept in the jar, it made every later answer the guest view, with no end.
    const { client, logins, restart } = await guestXnat(15 * 60 * 1000);
    expect((await client.listProjects()).map((p) => p.id)).toEqual(['PUBLIC', 'PRIVATE']);
    restart();
    expect((await client.listProjects()).map((p) => p.id)).toEqual(['PUBLIC', 'PRIVATE']);
    expect((await client.listProjects()).map((p) => p.id)).toEqual(['PUBLIC', 'PRIVATE']);
    expect(logins()).toBe(2);
  });

  it('stops with the borrowed-session message when a --jsession session is answered as the guest', async () => {
    const { client, restart } = await guestXnat(15 * 60 * 1000);
    const borrowed = await createXnatClient({ baseUrl: client.baseUrl, credentials: { kind: 'jsession', jsession: 'S1x0123456789', source: 'option' } });
    open.push({ close: () => borrowed.close() });
    expect((await borrowed.listProjects()).map((p) => p.id)).toEqual(['PUBLIC', 'PRIVATE']);
    restart();
    await expect(borrowed.listProjects()).rejects.toThrow(/session given by --jsession has expired or is not valid/);
  });
});
