// Users, JSESSIONID sessions (sliding idle timeout) and alias tokens, as XNAT's Spring layer does them.
import { randomBytes, randomUUID } from 'node:crypto';

export interface UserSpec {
  name: string;
  password: string;
  /** Projects the user can read. */
  projects: string[] | '*';
  /** Projects the user can write; default: '*' for users who read '*', none otherwise (collaborator). */
  edit?: string[] | '*';
}

export interface Session {
  id: string;
  user: UserSpec;
  lastAccess: number;
}

export interface AliasToken {
  alias: string;
  secret: string;
  user: UserSpec;
  id: number;
  created: number;
  expires: number;
  valid: boolean;
}

const TOKEN_LIFETIME_MS = 2 * 24 * 3600 * 1000;

export class AuthService {
  private readonly users = new Map<string, UserSpec>();
  private readonly sessions = new Map<string, Session>();
  private readonly tokens = new Map<string, AliasToken>();
  private nextTokenId = 1;

  constructor(
    users: UserSpec[],
    public idleMs: number,
  ) {
    for (const u of users) this.users.set(u.name, u);
  }

  canRead(user: UserSpec, project: string): boolean {
    return user.projects === '*' || user.projects.includes(project);
  }
  canEdit(user: UserSpec, project: string): boolean {
    const edit = user.edit ?? (user.projects === '*' ? '*' : []);
    return this.canRead(user, project) && (edit === '*' || edit.includes(project));
  }

  /** Password or alias:secret; null when neither matches. */
  checkCredentials(name: string, password: string): UserSpec | null {
    const u = this.users.get(name);
    if (u && u.password === password) return u;
    const t = this.tokens.get(name);
    if (t && t.valid && t.secret === password && t.expires > Date.now()) return t.user;
    return null;
  }

  createSession(user: UserSpec): Session {
    const s: Session = { id: randomBytes(16).toString('hex').toUpperCase(), user, lastAccess: Date.now() };
    this.sessions.set(s.id, s);
    return s;
  }

  /** Looks up and touches (sliding expiry) a session; expired ones are dropped. */
  session(id: string | undefined): Session | null {
    if (!id) return null;
    const s = this.sessions.get(id);
    if (!s) return null;
    const now = Date.now();
    if (now - s.lastAccess > this.idleMs) {
      this.sessions.delete(id);
      return null;
    }
    s.lastAccess = now;
    return s;
  }

  invalidate(id: string): void {
    this.sessions.delete(id);
  }
  expireAll(): void {
    this.sessions.clear();
  }

  issueToken(user: UserSpec): AliasToken {
    const now = Date.now();
    const t: AliasToken = {
      alias: randomUUID(),
      secret: randomBytes(48).toString('base64').replace(/[^A-Za-z0-9]/g, '').padEnd(64, 'x').slice(0, 64),
      user,
      id: this.nextTokenId++,
      created: now,
      expires: now + TOKEN_LIFETIME_MS,
      valid: true,
    };
    this.tokens.set(t.alias, t);
    return t;
  }

  /** The JSON XNAT returns from tokens/issue (numbers as numbers, key order as recorded). */
  tokenJson(t: AliasToken): string {
    return JSON.stringify({
      secret: t.secret,
      estimatedExpirationTime: t.expires,
      alias: t.alias,
      xdatUserId: t.user.name,
      singleUse: false,
      id: t.id,
      disabled: 0,
      created: t.created,
      enabled: true,
      timestamp: t.created,
    });
  }

  token(alias: string): AliasToken | null {
    return this.tokens.get(alias) ?? null;
  }
  invalidateToken(alias: string): boolean {
    const t = this.tokens.get(alias);
    if (!t) return false;
    t.valid = false;
    return true;
  }
}
