// The admin API (issue 13 item 1) on two nodes sharing Postgres and Redis,
// with the real socket.io-client: every node's connections listed from one
// node, a kick that ends the target user's sessions on both nodes and no one
// else's (with `session:revoked` first), a paused node (SIGSTOP) named in
// `incomplete` instead of silently missing (on every page), statistics,
// tenant filters, the listing's pages across both nodes (limit, nextCursor),
// and publishing keys (API_KEYS) refused on every admin route.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe } from 'node:test';
import { io } from 'socket.io-client';
import {
  cleanup, connect, expectNoEvent, it, privateDatabase, randomId, sleep, startServer, tcpReachable, token, waitFor,
  waitUntil,
} from './helpers.js';
import { sseOpen, wsSession, wsUrl } from './plain.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const redisCli = async (...args) =>
  (await promisify(execFile)('redis-cli', ['-u', REDIS_URL, ...args], { timeout: 10000 })).stdout.replace(/\s+/g, ' ').trim();
const ADMIN_KEY = 'admin-key-0123456789';
const API_KEY = 'publish-key-0123456789';
const ACME = randomId('acme-');
const OTHER = randomId('other-');
const TIMEOUT_MS = 1000;
const UI_PASSWORD = 'ui-password-0123456789';

let a;
let b;

before(async () => {
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  assert.ok(await tcpReachable(pg.hostname, Number(pg.port || 5432)), `Postgres at ${PG_URL} is required`);
  assert.ok(await tcpReachable(redis.hostname, Number(redis.port || 6379)), `Redis at ${REDIS_URL} is required`);
  const shared = {
    DATABASE_URL: await privateDatabase(PG_URL, 'sy_admin'), REDIS_URL, REDIS_PREFIX: randomId('sy-admin-'),
    API_KEYS: API_KEY, ADMIN_API_KEYS: ADMIN_KEY, ADMIN_TIMEOUT_MS: TIMEOUT_MS,
    ADMIN_UI: 'on', ADMIN_UI_USERNAME: 'ops', ADMIN_UI_PASSWORD: UI_PASSWORD,
  };
  a = await startServer({ ...shared, NODE_ID: randomId('a-') }, { name: 'admin-a' });
  b = await startServer({ ...shared, NODE_ID: randomId('b-') }, { name: 'admin-b' });
});

after(cleanup);

async function call(node, method, path, key = ADMIN_KEY) {
  const started = Date.now();
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers: key ? { authorization: `Bearer ${key}` } : {},
    signal: AbortSignal.timeout(10000),
  });
  return { status: res.status, body: await res.json(), ms: Date.now() - started };
}

const nodeOf = (n) => n.env.NODE_ID;

async function client(node, sub, companyId, role = 'operator') {
  const { socket, session } = await connect(node.url, { auth: { token: token({ sub, companyId, role }) } });
  return { socket, session };
}

describe('admin API on two nodes', () => {
  it('lists every connection of both nodes, with the tenant and user filters', async () => {
    const u1a = await client(a, 'u1', ACME);
    const u2a = await client(a, 'u2', ACME, 'supervisor');
    const u1b = await client(b, 'u1', ACME);
    const other = await client(b, 'u1', OTHER);
    const all = await call(a, 'GET', '/api/v1/admin/connections');
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.deepEqual(all.body.incomplete, []);
    const mine = all.body.connections.filter((c) => [ACME, OTHER].includes(c.companyId));
    assert.equal(mine.length, 4);
    const byId = Object.fromEntries(mine.map((c) => [c.socketId, c]));
    assert.equal(byId[u1a.session.socketId].node, nodeOf(a));
    assert.equal(byId[u1b.session.socketId].node, nodeOf(b));
    assert.equal(byId[other.session.socketId].node, nodeOf(b));
    const row = byId[u2a.session.socketId];
    assert.equal(row.userId, 'u2');
    assert.equal(row.role, 'supervisor');
    assert.equal(row.transport, 'socketio');
    assert.deepEqual(row.rooms, ['company', 'user:u2', 'role:supervisor']);
    assert.ok(!Number.isNaN(Date.parse(row.connectedAt)));

    // Asked from the other node: the same set.
    const fromB = await call(b, 'GET', `/api/v1/admin/connections?companyId=${ACME}`);
    assert.deepEqual(fromB.body.connections.map((c) => c.socketId).sort(),
      [u1a, u2a, u1b].map((c) => c.session.socketId).sort());
    assert.ok(fromB.body.connections.every((c) => c.companyId === ACME));
    const one = await call(a, 'GET', `/api/v1/admin/connections?companyId=${ACME}&userId=u1`);
    assert.deepEqual(one.body.connections.map((c) => c.node).sort(), [nodeOf(a), nodeOf(b)].sort());
    for (const c of [u1a, u2a, u1b, other]) c.socket.close();
  });

  it('lists plain WebSocket and SSE sessions with their transport, and kicks them too', async () => {
    const co = randomId('plain-');
    const tok = (sub) => token({ sub, companyId: co, role: 'operator' });
    const { c: ws } = await wsSession(wsUrl(b, '/ws', `?token=${tok('w1')}`));
    const sse = await sseOpen(`${a.url}/api/v1/stream?token=${tok('s1')}`);
    assert.equal(sse.status, 200);
    await sse.next((e) => e.event === 'session', 5000, 'sse session');
    const io1 = await client(a, 'i1', co);
    const listed = await call(a, 'GET', `/api/v1/admin/connections?companyId=${co}`);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const byUser = Object.fromEntries(listed.body.connections.map((c) => [c.userId, c]));
    assert.deepEqual(Object.keys(byUser).sort(), ['i1', 's1', 'w1']);
    assert.deepEqual([byUser.w1.transport, byUser.w1.node], ['ws', nodeOf(b)]);
    assert.deepEqual([byUser.s1.transport, byUser.s1.node], ['sse', nodeOf(a)]);
    assert.equal(byUser.i1.transport, 'socketio');
    const kicked = await call(b, 'DELETE', `/api/v1/admin/users/w1/connections?companyId=${co}`);
    assert.equal(kicked.body.disconnected, 1, JSON.stringify(kicked.body));
    await waitUntil(() => ws.closed, 5000, 'the plain WebSocket is closed by the kick');
    const after = await call(a, 'GET', `/api/v1/admin/connections?companyId=${co}`);
    assert.deepEqual(after.body.connections.map((c) => c.userId).sort(), ['i1', 's1']);
    sse.close();
    io1.socket.close();
  });

  it('pages through both nodes with limit and nextCursor: every connection once, in (node, socketId) order', async () => {
    const co = randomId('pages-');
    const clients = [
      await client(a, 'p1', co), await client(a, 'p2', co), await client(a, 'p3', co),
      await client(b, 'p4', co), await client(b, 'p5', co),
    ];
    const key = (c) => [c.node, c.socketId];
    const expected = clients
      .map((c, i) => ({ node: nodeOf(i < 3 ? a : b), socketId: c.session.socketId }))
      .sort((x, y) => (x.node === y.node ? (x.socketId < y.socketId ? -1 : 1) : (x.node < y.node ? -1 : 1)))
      .map(key);
    const seen = [];
    let cursor = null;
    let pages = 0;
    do {
      const res = await call(b, 'GET', `/api/v1/admin/connections?companyId=${co}&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body.incomplete, []);
      assert.ok(res.body.connections.length <= 2, JSON.stringify(res.body));
      seen.push(...res.body.connections.map(key));
      cursor = res.body.nextCursor;
      pages += 1;
    } while (cursor && pages < 10);
    assert.equal(cursor, null);
    assert.equal(pages, 3);
    assert.deepEqual(seen, expected);
    for (const c of clients) c.socket.close();
  });

  it('kicks one user on both nodes, with session:revoked first, and nobody else', async () => {
    const u1a = await client(a, 'u1', ACME);
    const u1b = await client(b, 'u1', ACME);
    const u2a = await client(a, 'u2', ACME);
    const otherU1 = await client(b, 'u1', OTHER);
    const revoked = [u1a, u1b].map((c) => waitFor(c.socket, 'session:revoked'));
    const closed = [u1a, u1b].map((c) => new Promise((r) => c.socket.once('disconnect', r)));
    const res = await call(b, 'DELETE', `/api/v1/admin/users/u1/connections?companyId=${ACME}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { disconnected: 2, incomplete: [] });
    for (const [r] of await Promise.all(revoked)) assert.equal(r.reason, 'REVOKED');
    // A server-side disconnect: socket.io clients do not reconnect by themselves.
    assert.deepEqual(await Promise.all(closed), ['io server disconnect', 'io server disconnect']);
    await expectNoEvent(u2a.socket, 'disconnect', 300);
    assert.ok(u2a.socket.connected && otherU1.socket.connected);
    const left = await call(a, 'GET', `/api/v1/admin/connections?userId=u1`);
    assert.deepEqual(left.body.connections.filter((c) => [ACME, OTHER].includes(c.companyId)).map((c) => c.companyId), [OTHER]);
    // Again: nothing left to disconnect.
    assert.equal((await call(a, 'DELETE', `/api/v1/admin/users/u1/connections?companyId=${ACME}`)).body.disconnected, 0);
    u2a.socket.close();
    otherU1.socket.close();
  });

  it('reports per-company and per-node statistics', async () => {
    const co = randomId('stats-');
    const c1 = await client(a, 'u1', co);
    const c2 = await client(b, 'u1', co);
    const c3 = await client(b, 'u2', co);
    const res = await call(a, 'GET', `/api/v1/admin/stats?companyId=${co}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.incomplete, []);
    assert.equal(res.body.connections, 3);
    assert.deepEqual(res.body.companies, [{ companyId: co, connections: 3, users: 2, rooms: 4 }]);
    assert.deepEqual(res.body.nodes.map((n) => [n.node, n.connections]).sort(), [[nodeOf(a), 1], [nodeOf(b), 2]].sort());
    assert.equal(typeof res.body.queuedDurableEvents, 'number');
    assert.equal(typeof res.body.nodes[0].replayLag.count, 'number');
    for (const c of [c1, c2, c3]) c.socket.close();
  });

  it('refuses publishing keys, missing keys and bad input with the error body', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/admin/connections'],
      ['GET', '/api/v1/admin/stats'],
      ['DELETE', `/api/v1/admin/users/u1/connections?companyId=${ACME}`],
    ]) {
      const withPublishKey = await call(a, method, path, API_KEY);
      assert.equal(withPublishKey.status, 401, path);
      assert.equal(withPublishKey.body.error.code, 'UNAUTHORIZED');
      assert.equal((await call(a, method, path, null)).status, 401);
    }
    // And the admin key does not publish.
    const res = await fetch(`${a.url}/api/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'dashboard:refresh', companyId: ACME, payload: {} }),
    });
    assert.equal(res.status, 401);
    const noCompany = await call(a, 'DELETE', '/api/v1/admin/users/u1/connections');
    assert.equal(noCompany.status, 400);
    assert.equal(noCompany.body.error.code, 'VALIDATION_FAILED');
    const badUser = await call(a, 'DELETE', `/api/v1/admin/users/${encodeURIComponent('x y')}/connections?companyId=${ACME}`);
    assert.equal(badUser.status, 400);
    assert.equal(badUser.body.error.details.field, 'userId');
  });

  it('logs an error when two processes share a NODE_ID (answers would be missed)', async () => {
    const { PORT: _port, ...same } = a.env;
    const twin = await startServer({ ...same, NODE_ID: nodeOf(a) }, { name: 'admin-twin' });
    try {
      await call(twin, 'GET', '/api/v1/admin/connections');
      await waitUntil(() => /another process uses this NODE_ID/.test(a.logs()), 3000, 'duplicate NODE_ID logged on a');
    } finally {
      await twin.stop();
    }
  });

  it('names a paused node in incomplete, never leaving it out silently', async () => {
    const co = randomId('paused-');
    const onB = await client(b, 'paused', co);
    const onA = await client(a, 'alive', co);
    await waitUntil(async () => {
      const seen = await call(a, 'GET', `/api/v1/admin/connections?companyId=${co}`);
      return seen.body.connections.map((c) => c.userId).sort().join() === 'alive,paused';
    }, 5000, 'a lists the sockets of both nodes');
    // a knows b from b's heartbeat in the Redis node set (an answer alone
    // makes b known for that one question only): the precondition, checked
    // where it lives. Under load this test once got incomplete: [].
    const nodeSet = () => redisCli('ZRANGE', `${a.env.REDIS_PREFIX}#nodes`, '0', '-1', 'WITHSCORES');
    await waitUntil(async () => (await nodeSet()).includes(nodeOf(b)), 5000, async () => `b is not in the node set: ${await nodeSet()}`);
    b.proc.kill('SIGSTOP');
    try {
      const list = await call(a, 'GET', `/api/v1/admin/connections?companyId=${co}`);
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.incomplete, [nodeOf(b)],
        `answered in ${list.ms} ms; node set now: ${await nodeSet()}; a's warnings: ${a.logs().split('\n').filter((l) => /WARN|ERROR/.test(l)).slice(-10).join(' | ')}`);
      assert.deepEqual(list.body.connections.map((c) => c.userId), ['alive']);
      assert.ok(list.ms >= TIMEOUT_MS - 50 && list.ms < TIMEOUT_MS + 2000, `answered in ${list.ms} ms`);
      // A page names the silent node too.
      const page = await call(a, 'GET', `/api/v1/admin/connections?companyId=${co}&limit=1`);
      assert.deepEqual(page.body.incomplete, [nodeOf(b)]);
      assert.deepEqual(page.body.connections.map((c) => c.userId), ['alive']);
      assert.equal(page.body.nextCursor, null);
      const stats = await call(a, 'GET', '/api/v1/admin/stats');
      assert.deepEqual(stats.body.incomplete, [nodeOf(b)]);
      const kick = await call(a, 'DELETE', `/api/v1/admin/users/paused/connections?companyId=${co}`);
      assert.deepEqual(kick.body, { disconnected: 0, incomplete: [nodeOf(b)] });
    } finally {
      b.proc.kill('SIGCONT');
    }
    await sleep(200);
    // Back: it answers again, and the kick it read after the deadline was dropped.
    const list = await call(a, 'GET', `/api/v1/admin/connections?companyId=${co}`);
    assert.deepEqual(list.body.incomplete, []);
    assert.deepEqual(list.body.connections.map((c) => c.userId).sort(), ['alive', 'paused']);
    onA.socket.close();
    onB.socket.close();
  });
});

/** Connects to /admin like the Admin UI does; resolves with the socket and what it received first. */
function adminUi(node, auth) {
  const socket = io(`${node.url}/admin`, { transports: ['websocket'], reconnection: false, forceNew: true, auth });
  const got = { session: null, config: null, stats: [], sockets: null };
  socket.on('session', (id) => { got.session = id; });
  socket.on('config', (c) => { got.config = c; });
  socket.on('server_stats', (s) => got.stats.push(s));
  socket.on('all_sockets', (list) => { got.sockets = list; });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve({ socket, got }));
    socket.once('connect_error', (err) => { socket.close(); reject(err); });
  });
}

describe('the socket.io Admin UI namespace (/admin)', () => {
  it('shows both nodes and every connection to the operator, read-only', async () => {
    const co = randomId('ui-');
    const c1 = await client(a, 'u1', co);
    const c2 = await client(b, 'u2', co);
    const { socket, got } = await adminUi(a, { username: 'ops', password: UI_PASSWORD });
    await waitFor(socket, 'all_sockets', 4000);
    await sleep(300);
    assert.ok(got.session, 'a session id for reconnecting');
    assert.deepEqual(got.config.supportedFeatures, ['AGGREGATED_EVENTS', 'ALL_EVENTS']);
    const servers = Object.fromEntries(got.stats.map((s) => [s.serverId, s]));
    assert.ok(servers[nodeOf(a)] && servers[nodeOf(b)], JSON.stringify(got.stats));
    assert.ok(servers[nodeOf(b)].clientsCount >= 1);
    const ids = got.sockets.map((s) => s.id);
    assert.ok(ids.includes(c1.session.socketId) && ids.includes(c2.session.socketId));
    const row = got.sockets.find((s) => s.id === c2.session.socketId);
    assert.equal(row.nsp, '/');
    assert.equal(row.data.node, nodeOf(b));
    assert.ok(row.rooms.includes('user:u2'));
    // Reconnecting with the session id needs no password.
    socket.close();
    const again = await adminUi(a, { sessionId: got.session });
    again.socket.close();
    for (const c of [c1, c2]) c.socket.close();
  });

  it('scopes a company admin (JWT with role admin) to their company', async () => {
    const mine = randomId('ui-mine-');
    const theirs = randomId('ui-theirs-');
    const m1 = await client(a, 'u1', mine);
    const m2 = await client(b, 'u2', mine);
    const t1 = await client(b, 'u3', theirs);
    const { socket, got } = await adminUi(b, { username: 'boss', password: token({ sub: 'boss', companyId: mine, role: 'admin' }) });
    await waitFor(socket, 'all_sockets', 4000);
    // The other node's sockets can come later than 300 ms when the machine
    // is loaded (two suites at once); wait for them, then for anything extra.
    await waitUntil(() => got.sockets.length >= 2, 4000, 'both nodes\' sockets of the company');
    await sleep(300);
    assert.deepEqual(got.sockets.map((s) => s.id).sort(), [m1, m2].map((c) => c.session.socketId).sort());
    assert.ok(got.sockets.every((s) => s.data.companyId === mine));
    const counts = Object.fromEntries(got.stats.map((s) => [s.serverId, s.clientsCount]));
    assert.equal(counts[nodeOf(a)], 1);
    assert.equal(counts[nodeOf(b)], 1, 'the other company\'s socket on b is not counted');
    socket.close();
    for (const c of [m1, m2, t1]) c.socket.close();
  });

  it('refuses wrong credentials and non-admin tokens', async () => {
    await assert.rejects(adminUi(a, { username: 'ops', password: 'wrong-password-000' }), /invalid credentials/);
    await assert.rejects(adminUi(a, { username: 'x', password: token({ sub: 'x', companyId: ACME, role: 'manager' }) }), /FORBIDDEN/);
    await assert.rejects(adminUi(a, { sessionId: 'made-up' }), /invalid credentials/);
  });
});
