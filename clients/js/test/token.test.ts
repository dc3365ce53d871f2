import { describe, expect, it } from 'vitest';
import { TokenKeeper, readClaims, refreshLead } from '../src/token';

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (claims: Record<string, unknown>) => `${b64({ alg: 'HS256' })}.${b64(claims)}.sig`;

describe('tokens', () => {
  it('reads sub/userId, company, role and exp without verifying', () => {
    expect(readClaims(jwt({ sub: 'ü1', companyId: 'acme', role: 'operator', exp: 100, iat: 40 }))).toEqual({
      userId: 'ü1', companyId: 'acme', role: 'operator', expiresAt: 100000, issuedAt: 40000,
    });
    expect(readClaims(jwt({ userId: 7, companyId: 'acme', role: 'admin', exp: 1 }))?.userId).toBe('7');
    expect(readClaims('garbage')).toBeNull();
  });

  it('refreshes a fifth of the lifetime before exp, between 1 s and 60 s', () => {
    expect(refreshLead({ userId: '', companyId: '', role: '', issuedAt: 0, expiresAt: 10000 })).toBe(2000);
    expect(refreshLead({ userId: '', companyId: '', role: '', issuedAt: 0, expiresAt: 3600000 })).toBe(60000);
    expect(refreshLead({ userId: '', companyId: '', role: '', issuedAt: 0, expiresAt: 2000 })).toBe(1000);
  });

  it('a function source is called once per fetch (concurrent calls share it), cached until a fresh one is asked', async () => {
    let now = 0;
    let calls = 0;
    const k = new TokenKeeper(async () => jwt({ sub: 'u', companyId: 'c', role: 'operator', iat: now / 1000, exp: now / 1000 + 10, n: ++calls }), () => now);
    const [a, b] = await Promise.all([k.get(), k.get()]);
    expect(a).toBe(b);
    expect(calls).toBe(1);
    expect(k.refreshIn()).toBe(8000);
    expect(k.stale()).toBe(false);
    // After a sleep past exp (no timer ran): stale and expired; a fresh token is fetched.
    now = 11000;
    expect(k.stale()).toBe(true);
    expect(k.expired()).toBe(true);
    await k.get(true);
    expect(calls).toBe(2);
    expect(k.expired()).toBe(false);
  });

  it('a string token is never refreshed', async () => {
    const k = new TokenKeeper(jwt({ sub: 'u', companyId: 'c', role: 'operator', exp: 1 }));
    await k.get(true);
    expect(k.refreshable).toBe(false);
    expect(k.refreshIn()).toBe(Infinity);
  });
});
