import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { call, get, jsessionFrom, setCookies } from './helpers.js';

let emu: RunningEmulator;
beforeAll(async () => {
  emu = await startEmulator();
});
afterAll(async () => {
  await emu?.close();
});

describe('unauthenticated requests', () => {
  it('non-browser clients get 401 with WWW-Authenticate and a Tomcat page', async () => {
    const r = await get(emu, '/data/projects', { user: null, headers: { 'user-agent': 'python-requests/2.31' } });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Basic realm="XNAT"');
    expect(r.text).toContain('HTTP Status 401');
  });

  it('browser-like clients get 302 to the login page', async () => {
    for (const ua of ['Mozilla/5.0 (X11; Linux x86_64)', 'Opera/9.80', 'Something AppleWebKit/537.36']) {
      const r = await get(emu, '/data/projects', { user: null, headers: { 'user-agent': ua } });
      expect(r.status).toBe(302);
      expect(r.headers.location).toBe(`${emu.url}/app/template/Login.vm`);
    }
  });

  it('bad credentials give 401 with the login-failure text and no WWW-Authenticate', async () => {
    const r = await get(emu, '/data/projects', { user: 'demo:wrong' });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBeUndefined();
    expect(r.text).toContain('Your login attempt failed because the username and password combination');
  });

  it('buildInfo is open and all strings; /data/version does not exist', async () => {
    const r = await get(emu, '/xapi/siteConfig/buildInfo', { user: null });
    expect(r.status).toBe(200);
    const info = r.json();
    expect(Object.values(info).every((v) => typeof v === 'string')).toBe(true);
    expect(info.version).toMatch(/^1\.8\./);
    expect((await get(emu, '/data/version')).status).toBe(404);
  });
});

describe('sessions', () => {
  it('Basic auth creates a session cookie, then the cookie alone works', async () => {
    const r = await get(emu, '/data/projects');
    expect(r.status).toBe(200);
    const cookies = setCookies(r);
    expect(cookies.find((c) => c.startsWith('JSESSIONID='))).toMatch(/^JSESSIONID=[0-9A-F]{32}; Path=\/; HttpOnly$/);
    expect(cookies.find((c) => c.startsWith('SESSION_EXPIRATION_TIME='))).toMatch(/^SESSION_EXPIRATION_TIME="\d{13},900000"; Path=\/$/);
    const id = jsessionFrom(r)!;
    const again = await get(emu, '/data/projects', { user: null, headers: { cookie: `JSESSIONID=${id}` } });
    expect(again.status).toBe(200);
    expect(jsessionFrom(again)).toBeNull(); // no new session when the cookie is valid
  });

  it('GET/POST /data/JSESSION returns the bare id; DELETE logs out', async () => {
    const login = await call(emu, 'POST', '/data/JSESSION');
    expect(login.status).toBe(200);
    expect(login.headers['content-type']).toMatch(/^text\/plain/);
    expect(login.text).toMatch(/^[0-9A-F]{32}$/);
    expect(jsessionFrom(login)).toBe(login.text);
    const cookie = { cookie: `JSESSIONID=${login.text}` };
    const same = await get(emu, '/data/JSESSION', { user: null, headers: cookie });
    expect(same.text).toBe(login.text);
    expect((await get(emu, '/data/auth', { user: null, headers: cookie })).text).toBe("User 'demo' is logged in");
    expect((await call(emu, 'DELETE', '/data/JSESSION', { user: null, headers: cookie })).status).toBe(200);
    const after = await get(emu, '/data/projects', { user: null, headers: cookie });
    expect(after.status).toBe(401);
  });

  it('JSESSION without credentials is the Restlet guard 401', async () => {
    const r = await get(emu, '/data/JSESSION', { user: null });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Basic realm="XNAT Protected Area"');
  });

  it('form login at /data/services/auth', async () => {
    const ok = await call(emu, 'PUT', '/data/services/auth', {
      user: null,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'username=reader&password=reader',
    });
    expect(ok.status).toBe(200);
    expect(ok.text).toMatch(/^[0-9A-F]{32}$/);
    const r = await get(emu, '/data/projects', { user: null, headers: { cookie: `JSESSIONID=${ok.text}` } });
    expect(r.json().ResultSet.Result.map((p: { ID: string }) => p.ID)).toEqual(['OPEN']);
    const bad = await call(emu, 'PUT', '/data/services/auth', { user: null, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=reader&password=nope' });
    expect(bad.status).toBe(401);
    expect(bad.text).toContain('<h3>Authentication failed.</h3>');
  });

  it('expireAllSessions invalidates every cookie', async () => {
    const id = (await call(emu, 'POST', '/data/JSESSION')).text;
    emu.expireAllSessions();
    const r = await get(emu, '/data/projects', { user: null, headers: { cookie: `JSESSIONID=${id}` } });
    expect(r.status).toBe(401);
  });

  it('idle expiry is sliding', async () => {
    emu.setOptions({ sessionIdleMs: 300 });
    try {
      const id = (await call(emu, 'POST', '/data/JSESSION')).text;
      const cookie = { cookie: `JSESSIONID=${id}` };
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 150));
        expect((await get(emu, '/data/projects', { user: null, headers: cookie })).status).toBe(200);
      }
      await new Promise((r) => setTimeout(r, 450));
      expect((await get(emu, '/data/projects', { user: null, headers: cookie })).status).toBe(401);
    } finally {
      emu.setOptions({ sessionIdleMs: 15 * 60 * 1000 });
    }
  });
});

describe('alias tokens', () => {
  it('issues, validates, authenticates and invalidates', async () => {
    const r = await get(emu, '/data/services/tokens/issue');
    expect(r.status).toBe(200);
    const t = r.json();
    expect(Object.keys(t)).toEqual(['secret', 'estimatedExpirationTime', 'alias', 'xdatUserId', 'singleUse', 'id', 'disabled', 'created', 'enabled', 'timestamp']);
    expect(t.secret).toMatch(/^[A-Za-z0-9]{64}$/);
    expect(typeof t.estimatedExpirationTime).toBe('number');
    expect(t.estimatedExpirationTime - t.created).toBe(2 * 24 * 3600 * 1000);
    expect(t).toMatchObject({ xdatUserId: 'demo', singleUse: false, disabled: 0, enabled: true });
    const v = await get(emu, `/data/services/tokens/validate/${t.alias}/${t.secret}`);
    expect(v.json()).toEqual({ valid: 'demo' });
    const viaToken = await get(emu, '/data/projects', { user: `${t.alias}:${t.secret}` });
    expect(viaToken.status).toBe(200);
    const inv = await get(emu, `/data/services/tokens/invalidate/${t.alias}/${t.secret}`);
    expect(inv.text).toBe('{"result": "OK"}');
    expect((await get(emu, '/data/projects', { user: `${t.alias}:${t.secret}` })).status).toBe(401);
    expect((await get(emu, '/data/services/tokens/invalidate/00000000-0000-0000-0000-000000000000')).status).toBe(404);
  });
});
