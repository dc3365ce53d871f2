// Two server processes (NODE_ID a and b) sharing Postgres and Redis under one
// random REDIS_PREFIX: events published on one node reach clients on the other,
// and both nodes report a healthy Redis adapter. Postgres and Redis must be
// reachable: this suite fails (never skips) when they are not.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import {
  cleanup, connect, emitAck, expectNoEvent, getJson, it, privateDatabase, randomId, sleep, startServer, tcpReachable,
  token, waitFor,
} from './helpers.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const COMPANY = randomId('cluster-co-');
const OTHER = randomId('cluster-other-');

let nodeA;
let nodeB;

before(async () => {
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  const missing = [];
  if (!(await tcpReachable(pg.hostname, Number(pg.port || 5432)))) missing.push(`Postgres at ${pg.hostname}:${pg.port || 5432}`);
  if (!(await tcpReachable(redis.hostname, Number(redis.port || 6379)))) missing.push(`Redis at ${redis.hostname}:${redis.port || 6379}`);
  if (missing.length) {
    throw new Error(`cluster suite needs ${missing.join(' and ')}, which ${missing.length > 1 ? 'are' : 'is'} not reachable. Start them (or set SY_TEST_POSTGRES_URL / SY_TEST_REDIS_URL); this suite does not skip.`);
  }
  const shared = { DATABASE_URL: await privateDatabase(PG_URL, 'sy_e2e'), REDIS_URL, REDIS_PREFIX: randomId('sy-e2e-') };
  // One after the other: both run migrations against the same database.
  nodeA = await startServer({ ...shared, NODE_ID: 'a' }, { name: 'node-a' });
  nodeB = await startServer({ ...shared, NODE_ID: 'b' }, { name: 'node-b' });
});

after(cleanup);

async function client(node, sub, role, companyId = COMPANY) {
  const { socket, session } = await connect(node.url, { auth: { token: token({ sub, companyId, role }) } });
  return { socket, session };
}

describe('two nodes over Redis', () => {
  it('health of both nodes: adapter redis, redis ok, database ok', async () => {
    for (const [node, id] of [[nodeA, 'a'], [nodeB, 'b']]) {
      const { status, body } = await getJson(`${node.url}/health/websocket`);
      assert.equal(status, 200, `${id}: ${JSON.stringify(body)}`);
      assert.equal(body.status, 'ok');
      assert.equal(body.service, 'websocket');
      assert.equal(body.node, id);
      assert.equal(body.adapter, 'redis');
      assert.equal(body.redis, 'ok');
      assert.equal(body.database, 'ok');
      assert.equal(typeof body.connectedClients, 'number');
      assert.equal(typeof body.uptimeSeconds, 'number');
      assert.equal(typeof body.version, 'string');
    }
  });

  it('publish on A reaches B and publish on B reaches A; other company hears nothing', async () => {
    const onA = await client(nodeA, 'alice', 'supervisor');
    const onB = await client(nodeB, 'bob', 'supervisor');
    const otherOnB = await client(nodeB, 'alice', 'supervisor', OTHER);
    for (const c of [onA, onB]) {
      const ack = await emitAck(c.socket, 'subscribe', { room: 'order:1' });
      assert.deepEqual(ack, { ok: true, rooms: ['order:1'], denied: [] });
    }
    await emitAck(otherOnB.socket, 'subscribe', { room: 'order:1' });
    // Give the adapter a moment to propagate the room joins.
    await sleep(200);
    const mark = otherOnB.socket.__events.length;

    // A -> B, ephemeral, company room.
    const refresh = { timestamp: new Date().toISOString() };
    let got = waitFor(onB.socket, 'dashboard:refresh', 5000);
    let noSelf = expectNoEvent(onA.socket, 'dashboard:refresh', 700);
    let ack = await emitAck(onA.socket, 'event:publish', { type: 'dashboard:refresh', room: 'company', payload: refresh });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    let [p, meta] = await got;
    assert.deepEqual(p, refresh);
    assert.equal(meta.id, ack.id);
    assert.equal(meta.room, 'company');
    assert.equal(meta.type, 'dashboard:refresh');
    await noSelf;

    // B -> A, durable, entity room.
    const status = { orderId: '1', oldStatus: 'pending', newStatus: 'completed', timestamp: new Date().toISOString() };
    got = waitFor(onA.socket, 'order:status_changed', 5000);
    noSelf = expectNoEvent(onB.socket, 'order:status_changed', 700);
    ack = await emitAck(onB.socket, 'event:publish', { type: 'order:status_changed', room: 'order:1', payload: status });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal(typeof ack.offset, 'number');
    [p, meta] = await got;
    assert.deepEqual(p, status);
    assert.equal(meta.id, ack.id);
    assert.equal(meta.room, 'order:1');
    assert.equal(meta.offset, ack.offset);
    await noSelf;

    // A -> B, durable: the shared log keeps one gapless sequence per room across nodes.
    got = waitFor(onB.socket, 'order:status_changed', 5000);
    const ack2 = await emitAck(onA.socket, 'event:publish', { type: 'order:status_changed', room: 'order:1', payload: status });
    assert.equal(ack2.ok, true, JSON.stringify(ack2));
    assert.equal(ack2.offset, ack.offset + 1);
    [p, meta] = await got;
    assert.equal(meta.offset, ack2.offset);

    await sleep(500);
    assert.deepEqual(otherOnB.socket.__events.slice(mark), [], 'the other company on node B received nothing');
  });

  it('connectedClients reflects the sockets on each node', async () => {
    const { body: a } = await getJson(`${nodeA.url}/health/websocket`);
    const { body: b } = await getJson(`${nodeB.url}/health/websocket`);
    assert.ok(a.connectedClients >= 1, `node a: ${a.connectedClients}`);
    assert.ok(b.connectedClients >= 2, `node b: ${b.connectedClients}`);
  });
});
