// Token refresh and expiry. The server runs with JWT_LEEWAY=0 so that a token
// with exp ≈ now + 2 s expires on time. The slow tests run concurrently.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import {
  assertCode, badTokens, claims, cleanup, connect, connectError, emitAck, expectNoEvent, it, nowSec,
  signHS256, sleep, startServer, token, waitFor, withTimeout,
} from './helpers.js';

let srv;

before(async () => {
  srv = await startServer({ JWT_LEEWAY: 0 }, { name: 'auth-refresh' });
});

after(cleanup);

const who = { sub: 'u1', companyId: 'acme', role: 'supervisor' };
const tokenExp = (exp, over = {}) => signHS256(claims({ ...who, ...over, exp }));

async function client(t, tok) {
  const { socket } = await connect(srv.url, { auth: { token: tok } }, { t });
  // Record the order of session:expired and disconnect.
  socket.__order = [];
  socket.on('session:expired', (p) => socket.__order.push(['session:expired', p]));
  socket.on('disconnect', (reason) => socket.__order.push(['disconnect', reason]));
  return socket;
}

/** Asserts expiredAt designates `exp` (seconds): ms epoch number or ISO string. */
function assertExpiredAt(expiredAt, exp) {
  const ms = typeof expiredAt === 'number' ? expiredAt : Date.parse(expiredAt);
  assert.ok(Number.isFinite(ms), `expiredAt is a time: ${JSON.stringify(expiredAt)}`);
  assert.equal(ms, exp * 1000, `expiredAt ${JSON.stringify(expiredAt)} is the token's exp`);
}

async function expectExpiry(socket, exp, timeoutMs) {
  const [payload] = await waitFor(socket, 'session:expired', timeoutMs);
  assert.equal(payload.reason, 'TOKEN_EXPIRED');
  assertExpiredAt(payload.expiredAt, exp);
  const expiredAtLocal = Date.now();
  assert.ok(expiredAtLocal >= exp * 1000 - 250, `session:expired not before exp (arrived ${exp * 1000 - expiredAtLocal} ms early)`);
  if (socket.connected) await waitFor(socket, 'disconnect', 3000);
  assert.equal(socket.connected, false);
  assert.deepEqual(socket.__order.map(([e]) => e), ['session:expired', 'disconnect']);
  assert.equal(socket.__order[1][1], 'io server disconnect');
}

describe('auth:refresh', { concurrency: true }, () => {
  it('a valid token with the same sub and company -> { ok: true, expiresAt }', async (t) => {
    const s = await client(t, token({ ...who, ttl: 600 }));
    const exp = nowSec() + 7200;
    const ack = await emitAck(s, 'auth:refresh', { token: tokenExp(exp) });
    assert.deepEqual(ack, { ok: true, expiresAt: exp * 1000 });
    assert.equal((await emitAck(s, 'ping')).pong, true);
  });

  it('another sub -> FORBIDDEN, connection kept', async (t) => {
    const s = await client(t, token({ ...who, ttl: 600 }));
    const ack = await emitAck(s, 'auth:refresh', { token: token({ ...who, sub: 'u2' }) });
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(ack.error?.code, 'FORBIDDEN');
    assert.equal(typeof ack.error.message, 'string');
    assert.equal((await emitAck(s, 'ping')).pong, true);
  });

  it('another company -> FORBIDDEN', async (t) => {
    const s = await client(t, token({ ...who, ttl: 600 }));
    const ack = await emitAck(s, 'auth:refresh', { token: token({ ...who, companyId: 'globex' }) });
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(ack.error?.code, 'FORBIDDEN');
  });

  it('a bad signature -> INVALID_TOKEN', async (t) => {
    const s = await client(t, token({ ...who, ttl: 600 }));
    const ack = await emitAck(s, 'auth:refresh', { token: badTokens.wrongSignature(who) });
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(ack.error?.code, 'INVALID_TOKEN');
  });

  it('garbage -> INVALID_TOKEN', async (t) => {
    const s = await client(t, token({ ...who, ttl: 600 }));
    const ack = await emitAck(s, 'auth:refresh', { token: 'garbage' });
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(ack.error?.code, 'INVALID_TOKEN');
  });

  it('an expired token -> TOKEN_EXPIRED', async (t) => {
    const s = await client(t, token({ ...who, ttl: 600 }));
    const ack = await emitAck(s, 'auth:refresh', { token: badTokens.expired(who) });
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(ack.error?.code, 'TOKEN_EXPIRED');
  });

  it('no token in the payload -> ok: false', async (t) => {
    const s = await client(t, token({ ...who, ttl: 600 }));
    const ack = await emitAck(s, 'auth:refresh', {});
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(typeof ack.error?.code, 'string');
    assert.equal((await emitAck(s, 'ping')).pong, true);
  });

  it('with JWT_LEEWAY=0 a token expired 2 s ago is refused at connect', async () => {
    assertCode(assert, await connectError(srv.url, { auth: { token: tokenExp(nowSec() - 2) } }), 'TOKEN_EXPIRED');
  });

  it('expiry without refresh: session:expired, then the server disconnects', async (t) => {
    const exp = nowSec() + 2;
    const s = await client(t, tokenExp(exp));
    await expectExpiry(s, exp, 6000);
  });

  it('a failed refresh does not extend the session', async (t) => {
    const exp = nowSec() + 2;
    const s = await client(t, tokenExp(exp));
    const ack = await emitAck(s, 'auth:refresh', { token: token({ ...who, sub: 'intruder' }) });
    assert.equal(ack.ok, false);
    await expectExpiry(s, exp, 6000);
  });

  it('a refresh with a later exp prevents the expiry, and the new exp applies', async (t) => {
    const exp = nowSec() + 2;
    const s = await client(t, tokenExp(exp));
    const newExp = exp + 3;
    const ack = await emitAck(s, 'auth:refresh', { token: tokenExp(newExp) });
    assert.deepEqual(ack, { ok: true, expiresAt: newExp * 1000 });

    // Past the first exp (+ 1 s margin): still connected, nothing expired.
    const waitMs = exp * 1000 + 1000 - Date.now();
    await expectNoEvent(s, 'session:expired', Math.max(waitMs, 0));
    assert.equal(s.connected, true);
    assert.equal((await emitAck(s, 'ping')).pong, true);

    // Then the new exp passes.
    await expectExpiry(s, newExp, 6000);
  });

  it('a long refresh keeps the socket alive well past the first exp', async (t) => {
    const exp = nowSec() + 2;
    const s = await client(t, tokenExp(exp));
    const ack = await emitAck(s, 'auth:refresh', { token: tokenExp(exp + 3600) });
    assert.equal(ack.ok, true);
    await withTimeout(sleep(exp * 1000 + 1500 - Date.now()), 10000, 'sleep');
    assert.equal(s.connected, true);
    assert.deepEqual(s.__order, []);
    assert.equal((await emitAck(s, 'ping')).pong, true);
  });
});
