// Where the credentials come from. Order:
//   1. a JSESSIONID given as an option (--jsession), then env XNAT_JSESSION → session-only mode;
//   2. user/password given programmatically (the CLI passes a user; never a password from argv);
//   3. env XNAT_USER / XNAT_PASS;
//   4. ~/.netrc (or $NETRC) entry for the URL's host — refused if group/others can read it;
//   5. a no-echo prompt when stdin is a terminal.
// A user from 2/3 without a password takes the password from XNAT_PASS, the netrc entry with that
// login, or the prompt. Alias tokens (alias/secret) are used exactly like user/password.
import { readFileSync } from 'node:fs';
import { stat, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import createDebug from 'debug';
import { XnatError } from './types.js';

const log = createDebug('xnatfs:auth');

export type CredentialSource = 'option' | 'env' | 'netrc' | 'prompt';

export type ResolvedCredentials =
  | { kind: 'password'; user: string; password: string; userSource: CredentialSource; passwordSource: CredentialSource; netrcFile?: string }
  | { kind: 'jsession'; jsession: string; source: 'option' | 'env' };

/** One line for the log, never containing the secret. */
export function describeCredentials(c: ResolvedCredentials): string {
  if (c.kind === 'jsession') return `an existing XNAT session (JSESSIONID from ${c.source === 'env' ? 'XNAT_JSESSION' : '--jsession'})`;
  const src = (s: CredentialSource) => (s === 'option' ? 'options' : s === 'env' ? 'environment' : s);
  return c.userSource === c.passwordSource
    ? `user '${c.user}' (from ${src(c.userSource)})`
    : `user '${c.user}' (user from ${src(c.userSource)}, password from ${src(c.passwordSource)})`;
}

/** Where a credential came from, phrased for "check …" advice. */
export function credentialHint(c: ResolvedCredentials): string {
  if (c.kind === 'jsession') return 'get a new session id or log in with credentials';
  switch (c.passwordSource) {
    case 'env':
      return 'check XNAT_USER/XNAT_PASS';
    case 'netrc':
      // The file it came from: a job script's NETRC=… is not ~/.netrc.
      return `check the password in ${c.netrcFile ?? '~/.netrc'}`;
    case 'prompt':
      return 'check the user name and password you typed';
    case 'option':
      return 'check the user name and password given';
  }
}

export interface NetrcEntry {
  /** null for the "default" entry. */
  machine: string | null;
  login?: string;
  password?: string;
  account?: string;
}

/**
 * Parse .netrc text: whitespace-separated tokens, "quoted tokens" with backslash escapes,
 * '#' comments at token start, and macdef bodies (skipped up to the next blank line).
 */
export function parseNetrc(text: string): NetrcEntry[] {
  const tokens = tokenizeNetrc(text);
  const entries: NetrcEntry[] = [];
  let cur: NetrcEntry | null = null;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.macdef) continue;
    switch (t.value) {
      case 'machine':
        cur = { machine: tokens[++i]?.value ?? '' };
        entries.push(cur);
        break;
      case 'default':
        cur = { machine: null };
        entries.push(cur);
        break;
      case 'login':
      case 'password':
      case 'account': {
        const v = tokens[++i]?.value;
        if (cur && v !== undefined) cur[t.value] = v;
        break;
      }
      default:
        // Unknown keywords (e.g. "port") are skipped with their value by the next iteration.
        break;
    }
  }
  return entries;
}

interface Token {
  value: string;
  macdef?: boolean;
}

function tokenizeNetrc(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = text.length;
  const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
  while (i < n) {
    const c = text[i]!;
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    let value = '';
    if (c === '"') {
      i++;
      while (i < n && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < n) i++;
        value += text[i];
        i++;
      }
      i++; // closing quote
    } else {
      while (i < n && !isSpace(text[i]!)) {
        if (text[i] === '\\' && i + 1 < n) i++;
        value += text[i];
        i++;
      }
    }
    out.push({ value });
    if (value === 'macdef') {
      // macro name, then the body up to an empty line
      const nl = text.indexOf('\n', i);
      const end = text.indexOf('\n\n', nl < 0 ? n : nl);
      out[out.length - 1] = { value, macdef: true };
      i = end < 0 ? n : end + 2;
    }
  }
  return out;
}

/** The entry for host (optionally with this login), else the default entry. */
export function findNetrcEntry(entries: NetrcEntry[], host: string, login?: string): NetrcEntry | null {
  const h = host.toLowerCase();
  const matches = entries.filter((e) => e.machine !== null && e.machine.toLowerCase() === h);
  const pick = login === undefined ? matches[0] : matches.find((e) => e.login === login);
  if (pick) return pick;
  const def = entries.find((e) => e.machine === null);
  if (def && (login === undefined || def.login === undefined || def.login === login)) return def;
  return null;
}

export function netrcPath(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  return env['NETRC'] && env['NETRC'].length > 0 ? env['NETRC'] : join(home, '.netrc');
}

/**
 * Read and parse a netrc file; null when it doesn't exist. Throws XnatError('unauthorized')
 * telling the user to chmod 600 when group or others may read it, or another user owns it.
 */
export async function readNetrc(path: string): Promise<NetrcEntry[] | null> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (process.platform !== 'win32') {
    if ((st.mode & 0o077) !== 0) {
      throw new XnatError(
        'unauthorized',
        `refusing to use ${path}: it is readable by other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
      );
    }
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
      throw new XnatError('unauthorized', `refusing to use ${path}: it belongs to another user; use your own ~/.netrc with chmod 600`);
    }
  }
  return parseNetrc(await readFile(path, 'utf8'));
}

export interface PromptIO {
  input: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  output: Writable;
}

/**
 * Ask a question on the terminal. With echo=false the terminal is put in raw mode and typed
 * characters are not shown (Backspace edits, Ctrl-C / Ctrl-D abort).
 */
export function promptLine(question: string, echo: boolean, io: PromptIO): Promise<string> {
  const { input, output } = io;
  return new Promise((resolve, reject) => {
    let answer = '';
    const wasRaw = (input as { isRaw?: boolean }).isRaw ?? false;
    const canRaw = typeof input.setRawMode === 'function';
    output.write(question);
    if (canRaw) input.setRawMode!(true);
    input.setEncoding?.('utf8');
    const finish = (err: Error | null) => {
      input.removeListener('data', onData);
      if (canRaw) input.setRawMode!(wasRaw);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(answer);
    };
    const onData = (chunk: string | Buffer) => {
      for (const ch of String(chunk)) {
        if (ch === '\r' || ch === '\n') return finish(null);
        if (ch === '\u0003' || (ch === '\u0004' && answer === '')) {
          return finish(new XnatError('unauthorized', 'login cancelled at the prompt'));
        }
        if (ch === '\u007f' || ch === '\b') {
          if (answer.length > 0) {
            answer = [...answer].slice(0, -1).join('');
            if (echo) output.write('\b \b');
          }
          continue;
        }
        if (ch < ' ' && ch !== '\t') continue;
        answer += ch;
        if (echo) output.write(ch);
      }
    };
    input.on('data', onData);
    input.resume();
  });
}

export interface CredentialOptions {
  baseUrl: string;
  user?: string;
  /** Only from a non-argv source (config, programmatic use). */
  password?: string;
  jsession?: string;
  env?: NodeJS.ProcessEnv;
  /** Path of the netrc file (default $NETRC or ~/.netrc). */
  netrcFile?: string;
  /** Prompt on a terminal when nothing else gives credentials (default: stdin is a TTY). */
  interactive?: boolean;
  /** Terminal streams for the prompt (default stdin / stderr). */
  promptIO?: PromptIO;
  /**
   * Whether this process runs in the background of its terminal (default: asks the kernel).
   * Only consulted when `interactive` is not given and the prompt's input is a terminal.
   */
  inBackground?: () => boolean;
}

/**
 * True when this process is in a background process group of its controlling terminal
 * (`xnatfs mount … &` in an interactive shell). Reading from or setting raw mode on the terminal
 * there stops the process (SIGTTIN/SIGTTOU): it would hang, unmounted, until `fg`.
 * Linux: /proc/self/stat gives the process group and the terminal's foreground group (tpgid).
 */
export function inBackgroundOfTerminal(): boolean {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // pid (comm) state ppid pgrp session tty_nr tpgid …; comm may hold spaces and parentheses
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(f[2]);
    const tpgid = Number(f[5]);
    return tpgid > 0 && pgrp > 0 && tpgid !== pgrp;
  } catch {
    return false;
  }
}

export async function resolveCredentials(opts: CredentialOptions): Promise<ResolvedCredentials> {
  const env = opts.env ?? process.env;
  const host = new URL(opts.baseUrl).hostname;

  if (opts.jsession) return { kind: 'jsession', jsession: opts.jsession, source: 'option' };

  let user: string | undefined = opts.user;
  let userSource: CredentialSource = 'option';
  if (!user && env['XNAT_USER']) {
    user = env['XNAT_USER'];
    userSource = 'env';
  }
  if (user && opts.password) return done(user, opts.password, userSource, 'option');
  if (user && env['XNAT_PASS']) return done(user, env['XNAT_PASS'], userSource, 'env');

  if (!user && env['XNAT_JSESSION']) return { kind: 'jsession', jsession: env['XNAT_JSESSION'], source: 'env' };

  const file = opts.netrcFile ?? netrcPath(env);
  const entries = await readNetrc(file);
  if (entries) {
    const entry = findNetrcEntry(entries, host, user);
    if (entry?.password !== undefined && (user || entry.login)) {
      return done(user ?? entry.login!, entry.password, user ? userSource : 'netrc', 'netrc', file);
    }
  }

  const io: PromptIO = opts.promptIO ?? { input: process.stdin, output: process.stderr };
  // Started with `&` from an interactive shell: a prompt would stop the process instead of asking.
  const background = opts.interactive === undefined && Boolean(io.input.isTTY) && (opts.inBackground ?? inBackgroundOfTerminal)();
  const interactive = opts.interactive ?? (Boolean(io.input.isTTY) && !background);
  if (interactive) {
    if (!user) {
      user = await promptLine(`XNAT user for ${host}: `, true, io);
      userSource = 'prompt';
    }
    const password = await promptLine(`Password for '${user}' at ${host}: `, false, io);
    return done(user, password, userSource, 'prompt');
  }

  const ask = background
    ? 'or start xnatfs in the foreground (without &), answer the prompt, then press Ctrl-Z and type bg'
    : 'or run on a terminal to be asked';
  throw new XnatError(
    'unauthorized',
    (background ? `cannot ask for a password in the background (&): ` : '') +
      (user
        ? `no password for user '${user}' at ${host}: set XNAT_PASS, add "machine ${host} login ${user} password PASS" to ${file} (chmod 600), ${ask}`
        : `no credentials for ${host}: set XNAT_USER and XNAT_PASS, add "machine ${host} login USER password PASS" to ${file} (chmod 600), ${ask}`),
  );

  function done(u: string, p: string, us: CredentialSource, ps: CredentialSource, netrcFile?: string): ResolvedCredentials {
    const c: ResolvedCredentials = { kind: 'password', user: u, password: p, userSource: us, passwordSource: ps, ...(netrcFile ? { netrcFile } : {}) };
    log('credentials: %s', describeCredentials(c));
    return c;
  }
}
