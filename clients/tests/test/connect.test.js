// Connecting: transports, token sources, every refusal code, public-key modes
// (RS256, ES256) and algorithm confusion, session contents, health, and the
// old socket.io v2 protocol (EIO=3).

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import {
  assertCode, badTokens, claims, cleanup, connect, connectError, connectV2, emitAck, emitAckV2,
  getJson, it, keyPair, nowSec, rawEmitAckV2, signHS256, sorted, startServer, token, waitUntil,
} from './helpers.js';

let srv; // HS256, default leeway, no iss/aud configured
let issAud; // HS256 with JWT_ISSUER and JWT_AUDIENCE
let rsa; // RS256 with a public key file
let ec; // ES256 with a public key file
let rsaKeys;
let ecKeys;

const ISS = 'https://auth.example.test';
const AUD = 'switchyard-e2e';

before(async () => {
  rsaKeys = keyPair('rsa');
  ecKeys = keyPair('ec');
  [srv, issAud, rsa, ec] = await Promise.all([
    startServer({ NODE_ID: 'solo' }, { name: 'hs256' }),
    startServer({ JWT_ISSUER: ISS, JWT_AUDIENCE: AUD }, { name: 'hs256-iss-aud' }),
    startServer({ JWT_SECRET: undefined, JWT_PUBLIC_KEY_FILE: rsaKeys.publicKeyFile }, { name: 'rs256' }),
    startServer({ JWT_SECRET: undefined, JWT_PUBLIC_KEY_FILE: ecKeys.publicKeyFile }, { name: 'es256' }),
  ]);
});

after(cleanup);

function assertSession(session, socket, { sub, companyId, role }) {
  assert.equal(session.socketId, socket.id, 'session.socketId === socket.id');
  assert.equal(session.userId, sub);
  assert.equal(session.companyId, companyId);
  assert.equal(session.role, role);
  assert.deepEqual(sorted(session.rooms), sorted(['company', `user:${sub}`, `role:${role}`]));
  assert.equal(typeof session.serverTime, 'number', 'serverTime is a number (ms epoch)');
  assert.ok(Math.abs(session.serverTime - Date.now()) < 60_000, `serverTime ${session.serverTime} is ms since epoch, near now`);
  assert.equal(session.replayed, 0);
}

describe('transports', () => {
  it('websocket only: connects and receives session', async (t) => {
    const { socket, session } = await connect(srv.url, { auth: { token: token({ sub: 'u1', companyId: 'acme', role: 'operator' }) } }, { t });
    assert.equal(socket.io.engine.transport.name, 'websocket');
    assertSession(session, socket, { sub: 'u1', companyId: 'acme', role: 'operator' });
  });

  it('polling then upgrade to websocket', async (t) => {
    let firstTransport;
    const { socket, session } = await connect(srv.url, { transports: ['polling', 'websocket'], auth: { token: token({ sub: 'u-poll' }) } }, {
      t,
      onSocket: (s) => s.io.once('open', () => { firstTransport = s.io.engine.transport.name; }),
    });
    assert.equal(firstTransport, 'polling', 'the first transport is polling');
    assertSession(session, socket, { sub: 'u-poll', companyId: 'acme', role: 'operator' });
    await waitUntil(() => socket.io.engine.transport.name === 'websocket', 5000, 'upgrade to websocket');
    const ack = await emitAck(socket, 'ping');
    assert.equal(ack.pong, true, 'ping works after the upgrade');
  });

  it('polling only works too', async (t) => {
    const { socket, session } = await connect(srv.url, { transports: ['polling'], auth: { token: token({ sub: 'u-lp' }) } }, { t });
    assert.equal(socket.io.engine.transport.name, 'polling');
    assert.equal(session.userId, 'u-lp');
    const ack = await emitAck(socket, 'ping', {});
    assert.equal(ack.pong, true);
  });
});

describe('token sources', () => {
  it('auth payload { token }', async (t) => {
    const { session } = await connect(srv.url, { auth: { token: token({ sub: 'from-auth' }) } }, { t });
    assert.equal(session.userId, 'from-auth');
  });

  it('query ?token=', async (t) => {
    const { session } = await connect(srv.url, { query: { token: token({ sub: 'from-query' }) } }, { t });
    assert.equal(session.userId, 'from-query');
  });

  it('Authorization: Bearer header (websocket transport)', async (t) => {
    const { session } = await connect(srv.url, { extraHeaders: { Authorization: `Bearer ${token({ sub: 'from-header' })}` } }, { t });
    assert.equal(session.userId, 'from-header');
  });

  it('Authorization: Bearer header (polling transport)', async (t) => {
    const { session } = await connect(srv.url, {
      transports: ['polling'],
      extraHeaders: { Authorization: `Bearer ${token({ sub: 'from-header-lp' })}` },
    }, { t });
    assert.equal(session.userId, 'from-header-lp');
  });

  it('auth payload wins over query and header', async (t) => {
    const { session } = await connect(srv.url, {
      auth: { token: token({ sub: 'winner-auth' }) },
      query: { token: token({ sub: 'loser-query' }) },
      extraHeaders: { Authorization: `Bearer ${token({ sub: 'loser-header' })}` },
    }, { t });
    assert.equal(session.userId, 'winner-auth');
  });

  it('query wins over header', async (t) => {
    const { session } = await connect(srv.url, {
      query: { token: token({ sub: 'winner-query' }) },
      extraHeaders: { Authorization: `Bearer ${token({ sub: 'loser-header' })}` },
    }, { t });
    assert.equal(session.userId, 'winner-query');
  });

  it('userId claim is accepted in place of sub', async (t) => {
    const tok = signHS256(claims({ sub: undefined, userId: 'via-userid', role: 'manager' }));
    const { socket, session } = await connect(srv.url, { auth: { token: tok } }, { t });
    assertSession(session, socket, { sub: 'via-userid', companyId: 'acme', role: 'manager' });
  });
});

describe('refusals', () => {
  const refuse = async (opts, code, url = srv.url) => {
    const err = await connectError(url, opts);
    assertCode(assert, err, code);
    return err;
  };

  it('no token at all -> UNAUTHORIZED', async () => {
    await refuse({}, 'UNAUTHORIZED');
  });

  it('empty auth payload -> UNAUTHORIZED', async () => {
    await refuse({ auth: {} }, 'UNAUTHORIZED');
  });

  it('alg none -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.algNone() } }, 'INVALID_TOKEN');
  });

  it('wrong signature -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.wrongSignature() } }, 'INVALID_TOKEN');
  });

  it('payload tampered after signing -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.tamperedPayload() } }, 'INVALID_TOKEN');
  });

  it('garbage string -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.garbage() } }, 'INVALID_TOKEN');
  });

  it('garbage in the query -> INVALID_TOKEN', async () => {
    await refuse({ query: { token: 'a.b.c' } }, 'INVALID_TOKEN');
  });

  it('garbage Bearer header -> INVALID_TOKEN', async () => {
    await refuse({ extraHeaders: { Authorization: 'Bearer not.a.jwt' } }, 'INVALID_TOKEN');
  });

  it('missing exp -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.missingExp() } }, 'INVALID_TOKEN');
  });

  it('nbf in the future -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.nbfFuture() } }, 'INVALID_TOKEN');
  });

  it('role not one of the four -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.badRole() } }, 'INVALID_TOKEN');
  });

  it('missing companyId -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.missingCompany() } }, 'INVALID_TOKEN');
  });

  it('expired -> TOKEN_EXPIRED', async () => {
    await refuse({ auth: { token: badTokens.expired() } }, 'TOKEN_EXPIRED');
  });

  it('expired 10 s ago is still accepted within the default 30 s leeway', async (t) => {
    const tok = signHS256(claims({ sub: 'leeway', exp: nowSec() - 10 }));
    const { session } = await connect(srv.url, { auth: { token: tok } }, { t });
    assert.equal(session.userId, 'leeway');
  });

  it('server with JWT_ISSUER/JWT_AUDIENCE accepts matching iss and aud', async (t) => {
    const { session } = await connect(issAud.url, { auth: { token: token({ sub: 'ia', iss: ISS, aud: AUD }) } }, { t });
    assert.equal(session.userId, 'ia');
  });

  it('wrong iss -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.wrongIssuer({ aud: AUD }) } }, 'INVALID_TOKEN', issAud.url);
  });

  it('wrong aud -> INVALID_TOKEN', async () => {
    await refuse({ auth: { token: badTokens.wrongAudience({ iss: ISS }) } }, 'INVALID_TOKEN', issAud.url);
  });
});

describe('public-key modes', () => {
  it('RS256: a token signed with the private key connects', async (t) => {
    const { socket, session } = await connect(rsa.url, { auth: { token: rsaKeys.token({ sub: 'rs', role: 'supervisor' }) } }, { t });
    assertSession(session, socket, { sub: 'rs', companyId: 'acme', role: 'supervisor' });
  });

  it('RS256: a token signed by another RSA key -> INVALID_TOKEN', async () => {
    const other = keyPair('rsa');
    assertCode(assert, await connectError(rsa.url, { auth: { token: other.token() } }), 'INVALID_TOKEN');
  });

  it('RS256: algorithm confusion (HS256 keyed with the public PEM) -> INVALID_TOKEN', async () => {
    const err = await connectError(rsa.url, { auth: { token: badTokens.algConfusion(rsaKeys.publicPem, { role: 'admin' }) } });
    assertCode(assert, err, 'INVALID_TOKEN');
  });

  it('RS256: an HS256 token signed with the default dev secret -> INVALID_TOKEN', async () => {
    assertCode(assert, await connectError(rsa.url, { auth: { token: token() } }), 'INVALID_TOKEN');
  });

  it('RS256: alg none -> INVALID_TOKEN', async () => {
    assertCode(assert, await connectError(rsa.url, { auth: { token: badTokens.algNone() } }), 'INVALID_TOKEN');
  });

  it('ES256: a token signed with the P-256 private key connects', async (t) => {
    const { socket, session } = await connect(ec.url, { auth: { token: ecKeys.token({ sub: 'es', role: 'admin', companyId: 'globex' }) } }, { t });
    assertSession(session, socket, { sub: 'es', companyId: 'globex', role: 'admin' });
  });

  it('ES256: algorithm confusion (HS256 keyed with the public PEM) -> INVALID_TOKEN', async () => {
    const err = await connectError(ec.url, { auth: { token: badTokens.algConfusion(ecKeys.publicPem) } });
    assertCode(assert, err, 'INVALID_TOKEN');
  });

  it('ES256: expired -> TOKEN_EXPIRED', async () => {
    const tok = ecKeys.token({ iat: nowSec() - 7200, exp: nowSec() - 3600 });
    assertCode(assert, await connectError(ec.url, { auth: { token: tok } }), 'TOKEN_EXPIRED');
  });
});

describe('session and automatic rooms', () => {
  for (const role of ['operator', 'supervisor', 'manager', 'admin']) {
    it(`session for a ${role}`, async (t) => {
      const sub = `user-${role}`;
      const { socket, session } = await connect(srv.url, { auth: { token: token({ sub, companyId: 'acme', role }) } }, { t });
      assertSession(session, socket, { sub, companyId: 'acme', role });
      const ack = await emitAck(socket, 'rooms');
      assert.equal(ack.ok, true);
      assert.deepEqual(sorted(ack.rooms), sorted(['company', `user:${sub}`, `role:${role}`]));
    });
  }

  it('session arrives once per connection', async (t) => {
    const { socket } = await connect(srv.url, { auth: { token: token({ sub: 'once' }) } }, { t });
    await emitAck(socket, 'ping');
    assert.equal(socket.__events.filter((e) => e.event === 'session').length, 1);
  });
});

describe('health', () => {
  it('/health/live and /health/ready answer 200', async () => {
    assert.equal((await getJson(`${srv.url}/health/live`)).status, 200);
    assert.equal((await getJson(`${srv.url}/health/ready`)).status, 200);
  });

  it('/health/websocket on a single node', async (t) => {
    const { status, body } = await getJson(`${srv.url}/health/websocket`);
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.equal(body.service, 'websocket');
    assert.equal(body.node, 'solo');
    assert.equal(body.adapter, 'local');
    assert.equal(body.database, 'ok');
    assert.equal(body.redis, 'disabled');
    assert.equal(typeof body.connectedClients, 'number');
    assert.equal(typeof body.uptimeSeconds, 'number');
    assert.ok(body.uptimeSeconds >= 0);
    assert.equal(typeof body.version, 'string');
    assert.ok(body.version.length > 0);

    // connectedClients counts this node's sockets exactly.
    const before = body.connectedClients;
    const { socket } = await connect(srv.url, { auth: { token: token({ sub: 'counted' }) } }, { t });
    const during = (await getJson(`${srv.url}/health/websocket`)).body.connectedClients;
    assert.equal(during, before + 1);
    socket.__close();
    await waitUntil(async () => (await getJson(`${srv.url}/health/websocket`)).body.connectedClients === before, 5000,
      `connectedClients back to ${before} after disconnect`);
  });
});

describe('socket.io v2 client (EIO=3)', () => {
  it('connects with the token in the query, gets session, ping acks', async (t) => {
    const { socket, session } = await connectV2(srv.url, { query: { token: token({ sub: 'legacy', role: 'supervisor' }) } }, { t });
    assert.equal(session.userId, 'legacy');
    assert.equal(session.companyId, 'acme');
    assert.equal(session.role, 'supervisor');
    assert.deepEqual(sorted(session.rooms), sorted(['company', 'user:legacy', 'role:supervisor']));
    assert.equal(session.replayed, 0);
    assert.equal(session.socketId, socket.id.replace(/^\/#/, ''), 'socketId is the v2 socket id');
    // An ordinary request/ack through the v2 client API.
    const rooms = await emitAckV2(socket, 'rooms');
    assert.equal(rooms.ok, true);
    assert.deepEqual(sorted(rooms.rooms), sorted(['company', 'user:legacy', 'role:supervisor']));
    const sub = await emitAckV2(socket, 'subscribe', { room: 'order:1' });
    assert.deepEqual(sub, { ok: true, rooms: ['order:1'], denied: [] });
    // `ping` is reserved by socket.io-client v2 (emit('ping') stays local), so
    // the EVENT packet is written directly, as other EIO=3 clients send it.
    const ack = await rawEmitAckV2(socket, 'ping', {});
    assert.equal(ack.pong, true);
    assert.equal(typeof ack.serverTime, 'number');
  });

  it('v2 over polling then upgrade', async (t) => {
    const { socket, session } = await connectV2(srv.url, {
      transports: ['polling', 'websocket'],
      query: { token: token({ sub: 'legacy-lp' }) },
    }, { t });
    assert.equal(session.userId, 'legacy-lp');
    await waitUntil(() => socket.io.engine.transport.name === 'websocket', 5000, 'v2 upgrade to websocket');
    const ack = await rawEmitAckV2(socket, 'ping');
    assert.equal(ack.pong, true);
    assert.equal((await emitAckV2(socket, 'rooms')).ok, true);
  });
});
