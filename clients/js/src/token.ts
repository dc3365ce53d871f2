// Tokens: a fixed string or an async source; the claims the SDK needs are read
// (not verified: the server verifies) to know the user, company, role and `exp`.

export interface Claims {
  userId: string;
  companyId: string;
  role: string;
  /** ms since the epoch, or Infinity when the token has no readable exp. */
  expiresAt: number;
  issuedAt: number;
}

export type TokenSource = string | (() => Promise<string>);

export function readClaims(token: string): Claims | null {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    const c = JSON.parse(json);
    const exp = typeof c.exp === 'number' ? c.exp * 1000 : Infinity;
    return {
      userId: String(c.sub ?? c.userId),
      companyId: String(c.companyId),
      role: String(c.role),
      expiresAt: exp,
      issuedAt: typeof c.iat === 'number' ? c.iat * 1000 : Date.now(),
    };
  } catch {
    return null;
  }
}

/** How long before `exp` to refresh: a fifth of the lifetime, between 1 s and 60 s. */
export const refreshLead = (c: Claims): number =>
  Math.min(60000, Math.max(1000, (c.expiresAt - c.issuedAt) / 5));

export class TokenKeeper {
  current: string | null = null;
  claims: Claims | null = null;
  private inflight: Promise<string> | null = null;

  constructor(private source: TokenSource, private now: () => number = Date.now) {}

  get refreshable(): boolean {
    return typeof this.source === 'function';
  }

  /** The current token, fetching one when there is none or `fresh` is asked (deduplicated). */
  get(fresh = false): Promise<string> {
    const src = this.source;
    if (typeof src === 'string') return Promise.resolve(this.keep(src));
    if (this.current && !fresh) return Promise.resolve(this.current);
    this.inflight ??= src()
      .then((t) => this.keep(t))
      .finally(() => {
        this.inflight = null;
      });
    return this.inflight;
  }

  private keep(t: string): string {
    this.current = t;
    this.claims = readClaims(t);
    return t;
  }

  /** ms until the token should be refreshed (≤ 0: now); Infinity when it cannot be. */
  refreshIn(): number {
    if (!this.refreshable || !this.claims || this.claims.expiresAt === Infinity) return Infinity;
    return this.claims.expiresAt - refreshLead(this.claims) - this.now();
  }

  /** True when less than half of the token's lifetime is left (or it is gone). */
  stale(): boolean {
    const c = this.claims;
    if (!c) return true;
    return c.expiresAt - this.now() < Math.max(refreshLead(c), (c.expiresAt - c.issuedAt) / 2);
  }

  expired(): boolean {
    return !!this.claims && this.claims.expiresAt <= this.now();
  }
}
