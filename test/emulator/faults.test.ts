import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { get } from './helpers.js';

let emu: RunningEmulator;
beforeAll(async () => {
  emu = await startEmulator();
});
afterAll(async () => {
  await emu?.close();
});

const FILE = '/data/experiments/XNAT_E00001/scans/4/resources/DICOM/files/SUBJ01_MR1.MR.4.0001.dcm';

describe('fault injection', () => {
  it('status500 fails exactly `count` matching requests with the Restlet status page', async () => {
    emu.injectFaults({ match: /\/scans$/, count: 2, kind: 'status500' });
    const a = await get(emu, '/data/experiments/XNAT_E00001/scans');
    const other = await get(emu, '/data/projects');
    const b = await get(emu, '/data/experiments/XNAT_E00001/scans');
    const c = await get(emu, '/data/experiments/XNAT_E00001/scans');
    expect([a.status, other.status, b.status, c.status]).toEqual([500, 200, 500, 200]);
    expect(a.headers['content-type']).toMatch(/^text\/html/);
    expect(a.text).toMatch(/^<html>\n<head>\n   <title>Status page<\/title>/);
    expect(a.text).toContain('<h3>');
  });

  it('method restricts the match', async () => {
    emu.injectFaults({ match: /JSESSION/, method: 'DELETE', count: 1, kind: 'status500' });
    expect((await get(emu, '/data/JSESSION')).status).toBe(200);
    emu.clearFaults();
  });

  it('drop cuts a body after headers and some bytes', async () => {
    emu.injectFaults({ match: /MR\.4\.0001\.dcm$/, count: 1, kind: 'drop' });
    const r = await request(emu.url + FILE, { headers: { authorization: 'Basic ' + Buffer.from('demo:demo').toString('base64') } });
    expect(r.statusCode).toBe(200);
    const declared = Number(r.headers['content-length']);
    let got = 0;
    await expect(
      (async () => {
        for await (const c of r.body) got += (c as Buffer).length;
      })(),
    ).rejects.toThrow();
    expect(got).toBeGreaterThan(0);
    expect(got).toBeLessThan(declared);
    // the next request is served normally
    expect((await get(emu, FILE)).body.length).toBe(declared);
  });

  it('drop without a body destroys the socket before headers', async () => {
    emu.injectFaults({ match: /resources\/NEWRES$/, method: 'PUT', count: 1, kind: 'drop' });
    await expect(
      request(emu.url + '/data/experiments/XNAT_E00001/resources/NEWRES', { method: 'PUT', headers: { authorization: 'Basic ' + Buffer.from('demo:demo').toString('base64') } }),
    ).rejects.toThrow();
  });
});

describe('latency and the request log', () => {
  it('adds latency before the headers', async () => {
    emu.setOptions({ latencyMs: 150 });
    try {
      const t0 = performance.now();
      await get(emu, '/data/projects');
      expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    } finally {
      emu.setOptions({ latencyMs: 0 });
    }
    const t1 = performance.now();
    await get(emu, '/data/projects');
    expect(performance.now() - t1).toBeLessThan(140);
  });

  it('records method, url with query, status and body framing since the last reset', async () => {
    emu.resetRequests();
    await get(emu, '/data/projects?format=csv');
    await get(emu, '/data/projects/NOPE');
    await get(emu, '/data/projects', { user: null });
    expect(emu.requests()).toEqual([
      { method: 'GET', url: '/data/projects?format=csv', status: 200, chunked: false },
      { method: 'GET', url: '/data/projects/NOPE', status: 404, chunked: false },
      { method: 'GET', url: '/data/projects', status: 401, chunked: false },
    ]);
  });
});
