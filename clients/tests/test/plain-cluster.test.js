// Plain WebSocket and SSE on two nodes sharing Postgres and Redis: a
// publish on node B (HTTP API, or a plain-WebSocket client on B) reaches a
// plain-WebSocket client, an SSE client and a socket.io client on node A,
// durable and ephemeral events alike, and presence/typing signals too; a
// plain client resumes exactly on the other node. Fails (never skips) when
// Postgres or Redis is not reachable.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe } from 'node:test';
import { cleanup, connect, emitAck, it, privateDatabase, randomId, sleep, startServer, tcpReachable, token, waitFor } from './helpers.js';
import { closeAllPlain, sseOpen, wsSession, wsUrl } from './plain.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = 'plain-cluster-key';
const CO = randomId('pcl-');
let nodeA;
let nodeB;
const PREFIX = randomId('sy-pcl-');

before(async () => {
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  for (const [what, host, port] of [['Postgres', pg.hostname, pg.port || 5432], ['Redis', redis.hostname, redis.port || 6379]]) {
    if (!(await tcpReachable(host, Number(port)))) throw new Error(`${what} at ${host}:${port} is not reachable; this suite does not skip`);
  }
  const shared = { DATABASE_URL: await privateDatabase(PG_URL, 'sy_plain'), REDIS_URL, REDIS_PREFIX: PREFIX, API_KEYS: API_KEY };
  nodeA = await startServer({ ...shared, NODE_ID: 'a' }, { name: 'node-a' });
  nodeB = await startServer({ ...shared, NODE_ID: 'b' }, { name: 'node-b' });
});

after(async () => {
  closeAllPlain();
  await cleanup();
});

async function publish(node, { room, ...body }) {
  if (room) body.rooms = [room];
  const res = await fetch(`${node.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ companyId: CO, ...body }),
  });
  const out = await res.json();
  assert.equal(res.status, 202, JSON.stringify(out));
  return out.events[0];
}

const tok = (sub, role = 'supervisor') => token({ sub, companyId: CO, role });

describe('plain transports on two nodes', () => {
  it('a publish on node B reaches a plain-WebSocket, an SSE and a socket.io client on node A (durable and ephemeral)', async () => {
    const room = `machine:${randomId()}`;
    const { c: ws } = await wsSession(wsUrl(nodeA, '/ws', `?token=${tok('cl-ws')}`));
    await ws.request({ type: 'subscribe', room });
    const es = await sseOpen(`${nodeA.url}/api/v1/stream?token=${tok('cl-sse')}&rooms=${room}`);
    await es.next((e) => e.event === 'subscribe');
    const { socket } = await connect(nodeA.url, { auth: { token: tok('cl-io') } });
    await emitAck(socket, 'subscribe', { room });
    const { c: wsB } = await wsSession(wsUrl(nodeB, '/ws', `?token=${tok('cl-b')}`));
    await wsB.request({ type: 'subscribe', room });
    await sleep(300);

    // Durable, through B's HTTP API.
    const durable = await publish(nodeB, { type: 'machine:status_changed', room, payload: { machineId: room.slice(8), oldStatus: 'idle', newStatus: 'running' } });
    const dWs = await ws.next((m) => m.type === 'machine:status_changed');
    const dSse = await es.next((e) => e.event === 'machine:status_changed');
    assert.equal(dWs.id, durable.id);
    assert.equal(dSse.data.id, durable.id);
    // Ephemeral, through B's HTTP API and from a plain client on B.
    const ts = new Date().toISOString();
    const io = waitFor(socket, 'dashboard:refresh', 5000);
    await publish(nodeB, { type: 'dashboard:refresh', room, payload: { timestamp: ts } });
    assert.equal((await ws.next((m) => m.type === 'dashboard:refresh')).payload.timestamp, ts);
    assert.equal((await es.next((e) => e.event === 'dashboard:refresh')).data.payload.timestamp, ts);
    await io;
    const ts2 = new Date(Date.now() + 1000).toISOString();
    const sent = await wsB.request({ type: 'publish', eventType: 'dashboard:refresh', room, payload: { timestamp: ts2 } });
    assert.equal(sent.success, true, JSON.stringify(sent));
    await ws.next((m) => m.type === 'dashboard:refresh' && m.payload.timestamp === ts2);
    await es.next((e) => e.event === 'dashboard:refresh' && e.data.payload.timestamp === ts2);
    // Signals (typing) cross nodes too.
    await wsB.request({ type: 'user:typing', room, isTyping: true });
    const typing = await ws.next((m) => m.type === 'user:typing');
    assert.equal(typing.payload.userId, 'cl-b');
    assert.equal(ws.events('dashboard:refresh').length, 2, 'each ephemeral event once');
    es.close();
  });

  it('a plain client killed on node A resumes exactly on node B', async () => {
    const room = `order:${randomId()}`;
    const order = (n) => ({ type: 'order:status_changed', room, payload: { orderId: room.slice(6), oldStatus: 'a', newStatus: `s${n}`, timestamp: new Date().toISOString() } });
    const { c } = await wsSession(wsUrl(nodeA, '/ws', `?token=${tok('cl-resume')}`));
    await c.request({ type: 'subscribe', room });
    for (let i = 0; i < 3; i++) await publish(nodeB, order(i));
    await c.next((m) => m.type === 'order:status_changed' && m.payload.newStatus === 's2');
    const first = c.events('order:status_changed').map((m) => m.offset);
    c.kill();
    for (let i = 3; i < 6; i++) await publish(nodeA, order(i));
    const offsets = encodeURIComponent(JSON.stringify({ [room]: first[first.length - 1] }));
    const { c: again } = await wsSession(wsUrl(nodeB, '/ws', `?token=${tok('cl-resume')}&offsets=${offsets}`));
    await again.next((m) => m.type === 'order:status_changed' && m.payload.newStatus === 's5');
    await sleep(200);
    const all = [...first, ...again.events('order:status_changed').map((m) => m.offset)];
    assert.deepEqual(all, [1, 2, 3, 4, 5, 6]);
  });

  it('an SSE client resumes with Last-Event-ID on the other node', async () => {
    const room = `order:${randomId()}`;
    const order = (n) => ({ type: 'order:status_changed', room, payload: { orderId: room.slice(6), oldStatus: 'a', newStatus: `s${n}`, timestamp: new Date().toISOString() } });
    const url = (node) => `${node.url}/api/v1/stream?token=${tok('cl-sse-resume')}&rooms=${room}`;
    const es = await sseOpen(url(nodeA));
    await es.next((e) => e.event === 'subscribe');
    for (let i = 0; i < 2; i++) await publish(nodeB, order(i));
    await es.next((e) => e.event === 'order:status_changed' && e.data.payload.newStatus === 's1');
    const lastId = es.lastEventId;
    es.close();
    for (let i = 2; i < 4; i++) await publish(nodeA, order(i));
    const again = await sseOpen(url(nodeB), { lastEventId: lastId });
    await again.next((e) => e.event === 'order:status_changed' && e.data.payload.newStatus === 's3');
    await sleep(200);
    const all = [...es.events, ...again.events].filter((e) => e.event === 'order:status_changed').map((e) => e.data.offset);
    assert.deepEqual(all, [1, 2, 3, 4]);
    again.close();
  });

  it('ephemeral deliveries go on the relay channel only for rooms where another node has plain sessions', async () => {
    const room = `machine:${randomId()}`;
    const tap = spawn('redis-cli', ['-u', REDIS_URL, 'SUBSCRIBE', `${PREFIX}#local`]);
    let seen = '';
    tap.stdout.on('data', (d) => { seen += d.toString(); });
    const relayed = () => seen.split('\n').filter((l) => l.includes('"kind":"delivery"') && l.includes(room)).length;
    try {
      await sleep(300);
      const { socket } = await connect(nodeA.url, { auth: { token: tok('relay-io') } });
      await emitAck(socket, 'subscribe', { room });
      await sleep(200);
      const ts = new Date().toISOString();
      const io = waitFor(socket, 'dashboard:refresh', 5000);
      await publish(nodeB, { type: 'dashboard:refresh', room, payload: { timestamp: ts } });
      await io;
      await sleep(300);
      assert.equal(relayed(), 0, 'socket.io clients alone: nothing on the relay');
      const { c } = await wsSession(wsUrl(nodeA, '/ws', `?token=${tok('relay-ws')}`));
      await c.request({ type: 'subscribe', room });
      await sleep(300);
      await publish(nodeB, { type: 'dashboard:refresh', room, payload: { timestamp: `${ts}-2` } });
      await c.next((m) => m.type === 'dashboard:refresh');
      // The tap (redis-cli on a pipe) may print after A already delivered.
      for (let i = 0; i < 40 && relayed() === 0; i++) await sleep(50);
      await sleep(200);
      assert.equal(relayed(), 1, 'relayed once a plain session on A is in the room');
      c.close();
    } finally {
      tap.kill();
    }
  });
});
