import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  credentialHint,
  describeCredentials,
  findNetrcEntry,
  parseNetrc,
  promptLine,
  readNetrc,
  resolveCredentials,
} from '../../src/xnat/credentials.js';
import { XnatError } from '../../src/xnat/types.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xnatfs-netrc-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function netrc(name: string, text: string, mode = 0o600): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  await chmod(p, mode);
  return p;
}

describe('parseNetrc', () => {
  it('parses machine/login/password/default, quoted tokens, comments and macdef', () => {
    const entries = parseNetrc(`# comment
machine xnat.example.org login bob password "pa ss\\"word"
machine other.org
  login alice
  password s3cret account acct
macdef init
cd /pub
bin

default login anon password guest
`);
    expect(entries).toEqual([
      { machine: 'xnat.example.org', login: 'bob', password: 'pa ss"word' },
      { machine: 'other.org', login: 'alice', password: 's3cret', account: 'acct' },
      { machine: null, login: 'anon', password: 'guest' },
    ]);
    expect(findNetrcEntry(entries, 'XNAT.example.org')?.login).toBe('bob');
    expect(findNetrcEntry(entries, 'nowhere.org')?.login).toBe('anon');
    expect(findNetrcEntry(entries, 'other.org', 'alice')?.password).toBe('s3cret');
  });

  it('refuses a netrc readable by group or others, telling to chmod 600', async () => {
    const p = await netrc('open', 'machine h login u password p\n', 0o644);
    const err = await readNetrc(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XnatError);
    expect((err as XnatError).message).toContain(`chmod 600 ${p}`);
    expect((err as XnatError).message).not.toContain('password p');
  });

  it('returns null for a missing file', async () => {
    expect(await readNetrc(join(dir, 'missing'))).toBeNull();
  });
});

describe('resolveCredentials', () => {
  const base = 'https://xnat.example.org/xnat';

  it('prefers an explicit jsession, then env user/pass', async () => {
    expect(await resolveCredentials({ baseUrl: base, jsession: 'ABC', env: { XNAT_USER: 'u', XNAT_PASS: 'p' } })).toMatchObject({
      kind: 'jsession',
      source: 'option',
    });
    const c = await resolveCredentials({ baseUrl: base, env: { XNAT_USER: 'u', XNAT_PASS: 'p' }, interactive: false });
    expect(c).toEqual({ kind: 'password', user: 'u', password: 'p', userSource: 'env', passwordSource: 'env' });
    expect(describeCredentials(c)).toBe("user 'u' (from environment)");
    expect(describeCredentials(c)).not.toContain('p)');
  });

  it('uses XNAT_JSESSION when no user is given', async () => {
    expect(await resolveCredentials({ baseUrl: base, env: { XNAT_JSESSION: 'S1' }, interactive: false })).toEqual({
      kind: 'jsession',
      jsession: 'S1',
      source: 'env',
    });
  });

  it('takes the netrc entry for the host, and the password for a given user', async () => {
    const p = await netrc('ok', 'machine xnat.example.org login bob password hunter2\n');
    expect(await resolveCredentials({ baseUrl: base, env: {}, netrcFile: p, interactive: false })).toMatchObject({
      user: 'bob',
      password: 'hunter2',
      passwordSource: 'netrc',
    });
    expect(await resolveCredentials({ baseUrl: base, user: 'bob', env: {}, netrcFile: p, interactive: false })).toMatchObject({
      user: 'bob',
      userSource: 'option',
      passwordSource: 'netrc',
    });
  });

  it('a refused netrc password: the advice names the file it came from ($NETRC), not always ~/.netrc', async () => {
    const p = await netrc('job', 'machine xnat.example.org login 451a00c9-alias password expired-secret\n');
    const c = await resolveCredentials({ baseUrl: base, env: {}, netrcFile: p, interactive: false });
    expect(credentialHint(c)).toBe(`check the password in ${p}`);
  });

  it('explains what to do when nothing is found and no terminal', async () => {
    const err = await resolveCredentials({ baseUrl: base, env: {}, netrcFile: join(dir, 'none'), interactive: false }).catch((e: unknown) => e);
    expect((err as XnatError).kind).toBe('unauthorized');
    expect((err as XnatError).message).toMatch(/XNAT_USER and XNAT_PASS.*chmod 600/);
  });

  it('for a user without a password, says how to give that user\'s password', async () => {
    const none = join(dir, 'none');
    const err = (await resolveCredentials({ baseUrl: base, user: 'reader', env: {}, netrcFile: none, interactive: false }).catch((e: unknown) => e)) as XnatError;
    expect(err.kind).toBe('unauthorized');
    const host = new URL(base).hostname;
    expect(err.message).toBe(
      `no password for user 'reader' at ${host}: set XNAT_PASS, add "machine ${host} login reader password PASS" to ${none} (chmod 600), or run on a terminal to be asked`,
    );
  });

  it('prompts without echo on a terminal', async () => {
    const input = Object.assign(new PassThrough(), { isTTY: true, isRaw: false, setRawMode(raw: boolean) { this.isRaw = raw; return this; } });
    const output = new PassThrough();
    let shown = '';
    output.on('data', (d: Buffer) => (shown += d.toString()));
    const pending = resolveCredentials({ baseUrl: base, env: {}, netrcFile: join(dir, 'none'), interactive: true, promptIO: { input, output } });
    setTimeout(() => input.write('carol\r'), 10);
    setTimeout(() => input.write('se\u007fecret\r'), 30);
    const c = await pending;
    expect(c).toMatchObject({ user: 'carol', password: 'secret', passwordSource: 'prompt' });
    expect(shown).toContain('carol');
    expect(shown).not.toContain('secret');
    expect(input.isRaw).toBe(false);
  });

  it('started in the background of a terminal (`xnatfs mount … &`): fails with advice instead of prompting', async () => {
    // A prompt there would stop the process (SIGTTOU on raw mode), leaving nothing mounted.
    const input = Object.assign(new PassThrough(), { isTTY: true, setRawMode() { throw new Error('raw mode set from the background'); } });
    const output = new PassThrough();
    let shown = '';
    output.on('data', (d: Buffer) => (shown += d.toString()));
    const err = (await resolveCredentials({ baseUrl: base, env: {}, netrcFile: join(dir, 'none'), promptIO: { input, output }, inBackground: () => true }).catch((e: unknown) => e)) as XnatError;
    expect(err).toBeInstanceOf(XnatError);
    expect(err.kind).toBe('unauthorized');
    expect(err.message).toMatch(/background/);
    expect(err.message).toMatch(/XNAT_USER and XNAT_PASS/);
    expect(err.message).toMatch(/Ctrl-Z/);
    expect(err.message).not.toContain('\n');
    expect(shown).toBe('');
  });

  it('in the foreground of a terminal it prompts', async () => {
    const input = Object.assign(new PassThrough(), { isTTY: true, setRawMode() { return this; } });
    const pending = resolveCredentials({ baseUrl: base, env: { XNAT_USER: 'dave' }, netrcFile: join(dir, 'none'), promptIO: { input, output: new PassThrough() }, inBackground: () => false });
    setTimeout(() => input.write('pw\r'), 10);
    expect(await pending).toMatchObject({ user: 'dave', password: 'pw', passwordSource: 'prompt' });
  });

  it('Ctrl-C at the prompt cancels', async () => {
    const input = Object.assign(new PassThrough(), { isTTY: true, setRawMode() { return this; } });
    const p = promptLine('pw: ', false, { input, output: new PassThrough() });
    input.write('\u0003');
    await expect(p).rejects.toThrow(/cancelled/);
  });
});
