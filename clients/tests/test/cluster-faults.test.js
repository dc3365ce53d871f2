// Cluster faults (issue 10, items 3-5), each on a private Postgres and Redis
// (the shared services are never touched):
// - Redis restarts: ephemeral cross-node delivery resumes on every node by
//   itself and health returns to ok;
// - Redis stalls: a durable HTTP publish does not wait for the announcement
//   to other nodes; Redis refuses PUBLISH for a moment: the announcement that
//   never reached it is healed (the other node's subscriptions stayed up, so
//   only the publishing node's resync request can tell it);
// - Postgres stops: durable publishes are refused with 503 UNAVAILABLE at
//   once, and publishing recovers by itself when it is back.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { cleanup, connect, getJson, it, randomId, sleep, startServer, token, waitUntil } from './helpers.js';
import { startPostgres, startRedis } from './services.js';

const API_KEY = 'faults-key';
let pg;
let redis;
let nodes = [];

before(async () => {
  pg = await startPostgres();
  redis = await startRedis();
  const shared = { DATABASE_URL: pg.url, REDIS_URL: redis.url, REDIS_PREFIX: randomId('sy-faults-'), API_KEYS: API_KEY, WS_PING_INTERVAL: 1000, WS_PING_TIMEOUT: 1000 };
  // One after the other: they migrate the same database.
  for (const id of ['a', 'b', 'c']) nodes.push(await startServer({ ...shared, NODE_ID: id }, { name: `faults-${id}` }));
});

after(async () => {
  await cleanup();
  await redis?.remove();
  await pg?.remove();
});

async function post(node, body) {
  const started = Date.now();
  const res = await fetch(`${node.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(20000),
  });
  return { status: res.status, body: await res.json(), ms: Date.now() - started };
}

const order = (co, n) => ({ type: 'order:status_changed', companyId: co, payload: { orderId: String(n), oldStatus: 'a', newStatus: 'b', timestamp: new Date().toISOString() } });

/** For each node as publisher: which other nodes' clients did not get an ephemeral event within 1.5 s. */
async function crossNodeFailures(co, clients) {
  const failures = [];
  for (const [i, node] of nodes.entries()) {
    const probe = randomId('p-');
    const res = await post(node, { type: 'dashboard:refresh', companyId: co, payload: { timestamp: new Date().toISOString(), probe } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const others = clients.filter((_, j) => j !== i);
    await waitUntil(() => others.every((c) => c.got.has(probe)), 1500, 'cross-node').catch(() => {});
    for (const [j, c] of clients.entries()) if (j !== i && !c.got.has(probe)) failures.push(`${nodes[i].name} -> ${nodes[j].name}`);
  }
  return failures;
}

async function healthStatuses() {
  return Promise.all(nodes.map(async (n) => (await getJson(`${n.url}/health/websocket`)).body.status));
}

describe('Redis restart', () => {
  it('ephemeral cross-node delivery resumes on every node and health returns to ok', { timeout: 60000 }, async (t) => {
    const co = randomId('co-');
    const clients = [];
    for (const node of nodes) {
      const got = new Set();
      const { socket } = await connect(node.url, { auth: { token: token({ sub: randomId('u'), companyId: co, role: 'operator' }) } }, {
        onSocket: (s) => s.on('dashboard:refresh', (p) => got.add(p.probe)),
      });
      clients.push({ socket, got });
    }
    await waitUntil(async () => (await crossNodeFailures(co, clients)).length === 0, 10000, 'cross-node delivery before the restart');
    await redis.stop();
    await sleep(1000);
    await redis.start();
    const restarted = Date.now();
    let failures = [];
    let statuses = [];
    await waitUntil(async () => {
      failures = await crossNodeFailures(co, clients);
      statuses = await healthStatuses();
      return failures.length === 0 && statuses.every((s) => s === 'ok');
    }, 20000, 'recovery').catch((e) => {
      throw new Error(`${e.message}: cross-node failures ${JSON.stringify(failures)}, health ${JSON.stringify(statuses)}`);
    });
    t.diagnostic(`cross-node delivery on all ${nodes.length} nodes and health ok ${Date.now() - restarted} ms after Redis came back`);
    for (const c of clients) c.socket.disconnect();
  });
});

describe('Redis stalls', () => {
  it('a durable publish does not wait for the announcement, and the other node still delivers it', { timeout: 60000 }, async (t) => {
    const co = randomId('co-');
    const [a, b] = nodes;
    const got = [];
    const { socket } = await connect(b.url, { auth: { token: token({ sub: 'watcher', companyId: co, role: 'operator' }) } }, {
      onSocket: (s) => s.on('order:status_changed', (p, meta) => got.push(meta.offset)),
    });
    assert.equal((await post(a, order(co, 1))).status, 202);
    await waitUntil(() => got.length === 1, 5000, 'live across nodes');
    // Redis holds every write command (PUBLISH included) for 3 s.
    await redis.cli('CLIENT', 'PAUSE', '3000', 'WRITE');
    const res = await post(a, order(co, 2));
    assert.equal(res.status, 202, JSON.stringify(res.body));
    t.diagnostic(`durable publish answered in ${res.ms} ms while Redis was stalled`);
    // Nothing else is published in this room: only the heal path can deliver it.
    await waitUntil(() => got.length === 2, 10000, `offset 2 on the other node (got ${JSON.stringify(got)})`);
    assert.deepEqual(got, [1, 2]);
    assert.ok(res.ms < 1000, `the publish waited ${res.ms} ms for Redis`);
    socket.disconnect();
  });
});

describe('Redis refuses the announcement', () => {
  it('an announcement that never reached Redis is healed: the other node still delivers the event', { timeout: 60000 }, async (t) => {
    const co = randomId('co-');
    const [a, b] = nodes;
    const got = [];
    const { socket } = await connect(b.url, { auth: { token: token({ sub: 'watcher', companyId: co, role: 'operator' }) } }, {
      onSocket: (s) => s.on('order:status_changed', (p, meta) => got.push(meta.offset)),
    });
    assert.equal((await post(a, order(co, 1))).status, 202);
    await waitUntil(() => got.length === 1, 5000, 'live across nodes');
    // PUBLISH (the durable bus) is refused for a moment; node b's
    // subscriptions stay up, so only node a knows an announcement was lost.
    await redis.cli('ACL', 'SETUSER', 'default', '-publish');
    try {
      const res = await post(a, order(co, 2));
      assert.equal(res.status, 202, JSON.stringify(res.body));
      await sleep(1000);
    } finally {
      await redis.cli('ACL', 'SETUSER', 'default', '+publish');
    }
    // Nothing else is published in this room: only the heal path can deliver it.
    await waitUntil(() => got.length === 2, 10000, `offset 2 on node b (got ${JSON.stringify(got)})`);
    assert.deepEqual(got, [1, 2]);
    socket.disconnect();
  });
});

describe('Postgres down', () => {
  it('durable publishes are refused with 503 at once, then publishing recovers by itself', { timeout: 90000 }, async (t) => {
    const co = randomId('co-');
    const [a] = nodes;
    assert.equal((await post(a, order(co, 1))).status, 202);
    await pg.stop();
    const answers = [];
    const inflight = [];
    const until = Date.now() + 4000;
    for (let n = 0; Date.now() < until; n++) {
      inflight.push(post(nodes[n % nodes.length], order(co, n)).then((r) => answers.push(r)));
      await sleep(40);
    }
    await Promise.all(inflight);
    const times = answers.map((r) => r.ms).sort((x, y) => x - y);
    const p50 = times[Math.floor(times.length / 2)];
    t.diagnostic(`${answers.length} publishes while Postgres was down: statuses ${JSON.stringify([...new Set(answers.map((r) => r.status))])}, time to answer p50 ${p50} ms, max ${times.at(-1)} ms`);
    assert.ok(answers.every((r) => r.status === 503 && r.body.error?.code === 'UNAVAILABLE'), JSON.stringify(answers.find((r) => r.status !== 503)));
    assert.ok(times.at(-1) < 1000, `slowest refusal took ${times.at(-1)} ms`);
    await pg.start();
    const back = Date.now();
    await waitUntil(async () => (await post(a, order(co, 999))).status === 202, 20000, 'publishing recovers');
    t.diagnostic(`publishing recovered ${Date.now() - back} ms after Postgres came back`);
  });
});
