// Two Switchyard nodes (the built binary, Postgres + Redis) behind nginx
// running the checked-in deploy/nginx/switchyard.conf (only its listen port
// and upstream addresses replaced), exercised with the real socket.io-client:
// polling then upgrade, WebSocket only, polling only (which needs the sticky
// `ip_hash`), events crossing nodes, and clients moving to the surviving node
// when theirs is killed with SIGKILL or stopped with SIGTERM, receiving what
// was published while they were away (the offline queue across the switch).
// The nodes trust nginx (TRUSTED_PROXIES=127.0.0.1): clients on their own
// loopback addresses (127.0.0.2, ...) each get a WS_MAX_CONNECTIONS_PER_IP
// budget of their own, so more clients than that connect through nginx.
// nginx, Postgres and Redis must be present: this suite fails, never skips.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import {
  assertCode, cleanup, connect, connectError, emitAck, getJson, it, privateDatabase, randomId, sleep, startServer,
  tcpReachable, token, waitFor, waitUntil,
} from './helpers.js';
import { startNginx } from './nginx.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = 'lb-test-key';
const COMPANY = randomId('lb-co-');
// Per client address on each node; the other tests hold at most two
// sockets on a node at a time.
const PER_IP = 4;

let nodes; // { a, b }
let shared;
let nginx;

before(async () => {
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  for (const [what, host, port] of [['Postgres', pg.hostname, pg.port || 5432], ['Redis', redis.hostname, redis.port || 6379]]) {
    if (!(await tcpReachable(host, Number(port)))) {
      throw new Error(`load-balancer suite needs ${what} at ${host}:${port}; start it (scripts/test.sh does) — this suite does not skip`);
    }
  }
  shared = {
    DATABASE_URL: await privateDatabase(PG_URL, 'sy_lb'), REDIS_URL, REDIS_PREFIX: randomId('sy-lb-'), API_KEYS: API_KEY, SHUTDOWN_GRACE: '5',
    // nginx connects to the nodes from 127.0.0.1: its X-Forwarded-For names the client.
    TRUSTED_PROXIES: '127.0.0.1', WS_MAX_CONNECTIONS_PER_IP: String(PER_IP),
  };
  // One after the other: both run migrations against the same database.
  nodes = {
    a: await startServer({ ...shared, NODE_ID: 'a' }, { name: 'node-a' }),
    b: await startServer({ ...shared, NODE_ID: 'b' }, { name: 'node-b' }),
  };
  nginx = await startNginx([`127.0.0.1:${nodes.a.port}`, `127.0.0.1:${nodes.b.port}`]);
});

after(async () => {
  await cleanup();
  if (nginx) await nginx.stop();
});

const other = (id) => (id === 'a' ? 'b' : 'a');

/** The node the balancer sends this machine's clients to (ip_hash is per address). */
async function balancedNode() {
  const { status, body } = await getJson(`${nginx.url}/health/websocket`);
  assert.equal(status, 200, JSON.stringify(body));
  return body.node;
}

/** Which node holds exactly one client now (the others hold none). */
async function nodeHoldingOne() {
  return waitUntil(async () => {
    const counts = {};
    for (const [id, n] of Object.entries(nodes)) {
      // A stopped node holds nobody.
      const { body } = await getJson(`${n.url}/health/websocket`).catch(() => ({ body: { connectedClients: 0 } }));
      counts[id] = body.connectedClients;
    }
    const holders = Object.keys(counts).filter((id) => counts[id] === 1);
    const total = Object.values(counts).reduce((x, y) => x + y, 0);
    return total === 1 && holders.length === 1 ? holders[0] : null;
  }, 5000, 'exactly one client connected across the nodes');
}

async function noClientsLeft() {
  await waitUntil(async () => {
    for (const n of Object.values(nodes)) {
      const { body } = await getJson(`${n.url}/health/websocket`).catch(() => ({ body: { connectedClients: 0 } }));
      if (body.connectedClients) return false;
    }
    return true;
  }, 5000, 'clients of earlier tests gone');
}

function order(n) {
  return { orderId: String(n), oldStatus: 'pending', newStatus: 'running', timestamp: new Date().toISOString() };
}

/** POSTs a durable event for `user` straight to `node` (not through the balancer). */
async function publishToUser(node, user, n) {
  const { status, body } = await getJson(`${node.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'order:status_changed', companyId: COMPANY, users: [user], payload: order(n) }),
  });
  assert.equal(status, 202, JSON.stringify(body));
}

/** A receiver through nginx with `transports`, and a publisher on the other node directly. */
async function crossNodeDelivery(t, transports, extra = {}) {
  const via = await balancedNode();
  const user = randomId('u-');
  const { socket } = await connect(nginx.url, { transports, auth: { token: token({ sub: user, companyId: COMPANY }) }, ...extra }, { t });
  const room = `order:${randomId()}`;
  assert.deepEqual(await emitAck(socket, 'subscribe', { room }), { ok: true, rooms: [room], denied: [] });
  const { socket: pub } = await connect(nodes[other(via)].url, {
    auth: { token: token({ sub: randomId('sup-'), companyId: COMPANY, role: 'supervisor' }) },
  }, { t });
  await sleep(100); // the room join travels to the other node through Redis
  const got = waitFor(socket, 'order:status_changed', 5000);
  const ack = await emitAck(pub, 'event:publish', { type: 'order:status_changed', room, payload: order(1) });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const [payload, meta] = await got;
  assert.equal(payload.orderId, '1');
  assert.equal(meta.room, room);
  return socket;
}

describe('two nodes behind nginx (deploy/nginx/switchyard.conf)', () => {
  it('health through the balancer: a node of the cluster, Redis adapter, all ok', async () => {
    const { status, body } = await getJson(`${nginx.url}/health/websocket`);
    assert.equal(status, 200, JSON.stringify(body));
    assert.ok(['a', 'b'].includes(body.node), body.node);
    assert.equal(body.adapter, 'redis');
    assert.equal(body.status, 'ok');
    const metrics = await fetch(`${nginx.url}/metrics`);
    assert.equal(metrics.status, 404, 'metrics are scraped per node, not through the balancer');
  });

  it('polling then upgrade to WebSocket; an event published on the other node arrives', async (t) => {
    await noClientsLeft();
    const socket = await crossNodeDelivery(t, ['polling', 'websocket']);
    await waitUntil(() => socket.io.engine.transport.name === 'websocket', 5000, 'upgrade to websocket');
    const pong = await emitAck(socket, 'ping');
    assert.equal(pong.pong, true);
  });

  it('WebSocket only', async (t) => {
    await noClientsLeft();
    const socket = await crossNodeDelivery(t, ['websocket']);
    assert.equal(socket.io.engine.transport.name, 'websocket');
  });

  it('polling only: every request of the session sticks to its node', async (t) => {
    await noClientsLeft();
    const socket = await crossNodeDelivery(t, ['polling'], { upgrade: false });
    assert.equal(socket.io.engine.transport.name, 'polling');
    // Many round trips, each a new HTTP request through the balancer.
    for (let i = 0; i < 10; i += 1) {
      const pong = await emitAck(socket, 'ping');
      assert.equal(pong.pong, true);
    }
    assert.equal(socket.connected, true);
  });

  it('a publish through the balancer reaches a client on the other node', async (t) => {
    await noClientsLeft();
    const via = await balancedNode();
    const room = `order:${randomId()}`;
    const { socket: rx } = await connect(nodes[other(via)].url, { auth: { token: token({ sub: randomId('u-'), companyId: COMPANY }) } }, { t });
    await emitAck(rx, 'subscribe', { room });
    const { socket: pub } = await connect(nginx.url, {
      transports: ['polling', 'websocket'],
      auth: { token: token({ sub: randomId('sup-'), companyId: COMPANY, role: 'supervisor' }) },
    }, { t });
    await sleep(100);
    const got = waitFor(rx, 'order:status_changed', 5000);
    const ack = await emitAck(pub, 'event:publish', { type: 'order:status_changed', room, payload: order(2) });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal((await got)[0].orderId, '2');
  });

  it('TRUSTED_PROXIES: more clients than WS_MAX_CONNECTIONS_PER_IP connect through nginx, each address with its own budget', async (t) => {
    await noClientsLeft();
    // A client on its own loopback address: nginx sees it as $remote_addr
    // and appends it to X-Forwarded-For; the nodes trust nginx (127.0.0.1).
    const from = (n) => ({
      transports: ['websocket'],
      localAddress: `127.0.0.${n}`,
      auth: { token: token({ sub: randomId('u-'), companyId: COMPANY }) },
    });
    const sockets = [];
    for (let i = 0; i < PER_IP; i += 1) sockets.push((await connect(nginx.url, from(2), { t })).socket);
    // The limit still holds for one client address...
    assertCode(assert, await connectError(nginx.url, from(2), { t }), 'LIMIT_EXCEEDED');
    // ...while other clients behind the same nginx connect.
    for (let n = 3; n < 3 + PER_IP; n += 1) sockets.push((await connect(nginx.url, from(n), { t })).socket);
    assert.equal(sockets.length, 2 * PER_IP);
    assert.ok(sockets.every((s) => s.connected));
    let total = 0;
    for (const n of Object.values(nodes)) total += (await getJson(`${n.url}/health/websocket`)).body.connectedClients;
    assert.equal(total, 2 * PER_IP, 'every client is connected through nginx');
    for (const s of sockets) s.close();
  });

  for (const signal of ['SIGKILL', 'SIGTERM']) {
    it(`${signal} on the client's node: it reconnects through the balancer to the other node and gets what was published meanwhile`, { timeout: 60000 }, async (t) => {
      await noClientsLeft();
      const user = randomId('u-');
      const { socket } = await connect(nginx.url, {
        transports: ['polling', 'websocket'],
        auth: { token: token({ sub: user, companyId: COMPANY }), deviceId: 'tablet-1' },
        // Reconnect on a fixed delay, so the events below are published
        // while the client is surely away.
        reconnection: true,
        reconnectionDelay: 1500,
        reconnectionDelayMax: 1500,
        randomizationFactor: 0,
      }, { t });
      const home = await nodeHoldingOne();
      const survivor = nodes[other(home)];
      const victim = nodes[home];
      const gone = waitFor(socket, 'disconnect', 15000);
      victim.proc.kill(signal);
      await gone;
      const replayed = [];
      socket.on('order:status_changed', (p) => replayed.push(p.orderId));
      const back = waitFor(socket, 'session', 20000);
      await publishToUser(survivor, user, 101);
      await publishToUser(survivor, user, 102);
      const [session] = await back;
      assert.equal(session.userId, user);
      assert.deepEqual(replayed, ['101', '102'], 'the offline queue is delivered on the other node, in order, before session');
      assert.ok(session.replayed >= 2, JSON.stringify(session));
      assert.equal(await nodeHoldingOne(), other(home), 'the client now lives on the surviving node');
      // Live again on the new node.
      const live = waitFor(socket, 'order:status_changed', 5000);
      await publishToUser(survivor, user, 103);
      assert.equal((await live)[0].orderId, '103');
      const exit = await victim.stop();
      if (signal === 'SIGTERM') assert.deepEqual(exit, { code: 0, signal: null }, 'a SIGTERM drains and exits 0');
      socket.close();
      // Back on its port: once nginx's fail_timeout (10 s) has passed, the
      // balancer sends this address's clients to it again.
      nodes[home] = await startServer({ ...shared, NODE_ID: home, PORT: victim.port }, { name: `node-${home}` });
      await waitUntil(async () => (await balancedNode()) === home, 25000, `the balancer sends clients to ${home} again`);
    });
  }
});
