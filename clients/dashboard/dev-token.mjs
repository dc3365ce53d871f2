// Development token endpoint for the example dashboard: GET /dev-token?user=&role=&company=&ttl=
// answers an HS256 JWT signed with JWT_SECRET (the secret the local server uses).
// In production your own backend mints tokens after its login; never ship this.

import crypto from 'node:crypto';

const ROLES = ['operator', 'supervisor', 'manager', 'admin'];
const ID = /^[A-Za-z0-9_.@-]{1,64}$/;
const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

export function mintToken({ user, company, role, ttl }, secret) {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub: user, companyId: company, role, iat: now, exp: now + ttl })}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** Parses the query; returns { claims } or { error } naming the bad parameter. */
export function parseTokenQuery(searchParams) {
  const user = searchParams.get('user') ?? 'alice';
  const company = searchParams.get('company') ?? 'acme';
  const role = searchParams.get('role') ?? 'operator';
  const ttl = Number(searchParams.get('ttl') ?? 3600);
  if (!ID.test(user)) return { error: 'user must be 1-64 characters of [A-Za-z0-9_.@-]' };
  if (!ID.test(company)) return { error: 'company must be 1-64 characters of [A-Za-z0-9_.@-]' };
  if (!ROLES.includes(role)) return { error: `role must be one of ${ROLES.join(', ')}` };
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86400) return { error: 'ttl must be an integer number of seconds, 1-86400' };
  return { claims: { user, company, role, ttl } };
}

/** Connect/Vite middleware serving /dev-token. */
export function devTokenMiddleware(secret, { onMint } = {}) {
  return (req, res, next) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname !== '/dev-token') return next();
    const { claims, error } = parseTokenQuery(url.searchParams);
    if (!secret) {
      res.statusCode = 500;
      return res.end('JWT_SECRET is not set: start the dev server with the same JWT_SECRET as the switchyard server');
    }
    if (error) {
      res.statusCode = 400;
      return res.end(error);
    }
    onMint?.(claims);
    res.setHeader('content-type', 'text/plain');
    res.setHeader('cache-control', 'no-store');
    res.end(mintToken(claims, secret));
  };
}
