// Tenant isolation and event delivery: companies A and B use the SAME user ids
// and the SAME logical room names. What is published in A reaches A's
// subscribers as (payload, meta) with the logical room name, never B, and
// never the sending socket.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { cleanup, connect, emitAck, expectNoEvent, it, randomId, sleep, startServer, token, waitFor } from './helpers.js';

const A = randomId('acme-');
const B = randomId('globex-');
const QUIET_MS = 500;

let srv;
const a = {}; // company A sockets
const b = {}; // company B sockets

async function join(companyId, sub, role, rooms = []) {
  const { socket } = await connect(srv.url, { auth: { token: token({ sub, companyId, role }) } });
  if (rooms.length) {
    const ack = await emitAck(socket, 'subscribe', { rooms });
    assert.equal(ack.ok, true, `subscribe ${JSON.stringify(ack)}`);
    assert.deepEqual(ack.denied, [], `subscribe ${companyId}/${sub}: ${JSON.stringify(ack.denied)}`);
  }
  return socket;
}

before(async () => {
  srv = await startServer({}, { name: 'isolation' });
  // Same user ids and room names in both companies.
  for (const [co, set] of [[A, a], [B, b]]) {
    set.pub = await join(co, 'u1', 'supervisor', ['order:1']); // publisher
    set.pub2 = await join(co, 'u1', 'supervisor', ['order:1']); // the same user's second tab
    set.op = await join(co, 'u2', 'operator', ['order:1']);
    set.mgr = await join(co, 'u3', 'manager'); // company only, not in order:1
  }
  // An admin in B joins everything it can name that A also uses.
  b.admin = await join(B, 'u1', 'admin', ['order:1', 'user:u2', 'role:operator']);
});

after(cleanup);

const allOf = (set) => Object.values(set);

/** Marks the current end of every socket's event log. */
const mark = (sockets) => new Map(sockets.map((s) => [s, s.__events.length]));
const since = (marks) => [...marks].flatMap(([s, n]) => s.__events.slice(n).map((e) => ({ id: s.id, ...e })));

function orderPayload() {
  return { orderId: '1', oldStatus: 'pending', newStatus: 'in_progress', timestamp: new Date().toISOString() };
}

function assertMeta(meta, { ack, type, room, durable }) {
  assert.equal(typeof meta, 'object', 'second argument is the meta object');
  assert.equal(meta.id, ack.id);
  assert.equal(meta.type, type);
  assert.equal(meta.room, room, 'meta.room is the logical name');
  assert.equal(typeof meta.timestamp, 'string');
  assert.ok(!Number.isNaN(Date.parse(meta.timestamp)), `timestamp is ISO-8601: ${meta.timestamp}`);
  assert.ok(Math.abs(Date.parse(meta.timestamp) - Date.now()) < 60_000, 'timestamp is now');
  assert.equal(typeof meta.source, 'string');
  assert.equal(meta.priority, 'medium');
  if (durable) {
    assert.equal(typeof meta.offset, 'number', 'durable events carry an offset');
    assert.equal(meta.offset, ack.offset);
  } else {
    assert.equal(meta.offset, undefined, 'ephemeral events carry no offset');
  }
}

describe('isolation between companies', () => {
  it('durable order:status_changed to order:1 reaches only A\'s order:1 subscribers', async () => {
    const payload = orderPayload();
    const marks = mark([...allOf(a), ...allOf(b)]);
    const gotOp = waitFor(a.op, 'order:status_changed');
    const gotPub2 = waitFor(a.pub2, 'order:status_changed');
    const noSelf = expectNoEvent(a.pub, 'order:status_changed', QUIET_MS + 500);

    const ack = await emitAck(a.pub, 'event:publish', { type: 'order:status_changed', room: 'order:1', payload });
    assert.equal(ack.ok, true, `publish ack: ${JSON.stringify(ack)}`);
    assert.ok((typeof ack.id === 'string' && ack.id.length > 0) || typeof ack.id === 'number', `ack.id: ${JSON.stringify(ack.id)}`);
    assert.equal(typeof ack.offset, 'number', 'a durable publish acks with an offset');

    for (const got of [gotOp, gotPub2]) {
      const [p, meta] = await got;
      assert.deepEqual(p, payload);
      assertMeta(meta, { ack, type: 'order:status_changed', room: 'order:1', durable: true });
    }
    await noSelf;
    await sleep(QUIET_MS);

    const events = since(marks);
    // Exactly one delivery to each of A's other order:1 sockets, nothing else anywhere.
    assert.deepEqual(
      events.map((e) => [e.id, e.event]).sort(),
      [[a.op.id, 'order:status_changed'], [a.pub2.id, 'order:status_changed']].sort(),
      `deliveries: ${JSON.stringify(events)}`,
    );
  });

  it('ephemeral dashboard:refresh to company reaches every other A socket, no B socket', async () => {
    const payload = { timestamp: new Date().toISOString() };
    const marks = mark([...allOf(a), ...allOf(b)]);
    const receivers = [a.pub2, a.op, a.mgr];
    const got = receivers.map((s) => waitFor(s, 'dashboard:refresh'));
    const noSelf = expectNoEvent(a.pub, 'dashboard:refresh', QUIET_MS + 500);

    const ack = await emitAck(a.pub, 'event:publish', { type: 'dashboard:refresh', room: 'company', payload });
    assert.equal(ack.ok, true, `publish ack: ${JSON.stringify(ack)}`);

    for (const g of got) {
      const [p, meta] = await g;
      assert.deepEqual(p, payload);
      assertMeta(meta, { ack, type: 'dashboard:refresh', room: 'company', durable: false });
    }
    await noSelf;
    await sleep(QUIET_MS);
    const events = since(marks);
    assert.deepEqual(
      events.map((e) => e.id).sort(),
      receivers.map((s) => s.id).sort(),
      `deliveries: ${JSON.stringify(events)}`,
    );
  });

  it('room defaults to company', async () => {
    const payload = { timestamp: new Date().toISOString() };
    const marks = mark(allOf(b));
    const got = waitFor(a.op, 'dashboard:refresh');
    const ack = await emitAck(a.pub, 'event:publish', { type: 'dashboard:refresh', payload });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const [p, meta] = await got;
    assert.deepEqual(p, payload);
    assert.equal(meta.room, 'company');
    await sleep(QUIET_MS);
    assert.deepEqual(since(marks), []);
  });

  it('and the other way round: B publishes, A hears nothing', async () => {
    const payload = orderPayload();
    const marks = mark(allOf(a));
    const gotB = waitFor(b.op, 'order:status_changed');
    const gotAdmin = waitFor(b.admin, 'order:status_changed');
    const ack = await emitAck(b.pub, 'event:publish', { type: 'order:status_changed', room: 'order:1', payload });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    for (const g of [gotB, gotAdmin]) {
      const [p, meta] = await g;
      assert.deepEqual(p, payload);
      assert.equal(meta.room, 'order:1');
    }
    await sleep(QUIET_MS);
    assert.deepEqual(since(marks), []);
  });

  it('each company\'s order:1 has its own offset sequence', async () => {
    const pa1 = await emitAck(a.pub, 'event:publish', { type: 'order:status_changed', room: 'order:1', payload: orderPayload() });
    const pb1 = await emitAck(b.pub, 'event:publish', { type: 'order:status_changed', room: 'order:1', payload: orderPayload() });
    const pa2 = await emitAck(a.pub, 'event:publish', { type: 'order:status_changed', room: 'order:1', payload: orderPayload() });
    for (const ack of [pa1, pb1, pa2]) assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal(pa2.offset, pa1.offset + 1, 'A\'s offsets are gapless: B\'s publish did not consume one');
    await sleep(QUIET_MS); // let the deliveries land before the next test marks the logs
  });

  it('an operator may not publish dashboard:refresh -> FORBIDDEN, nothing delivered', async () => {
    const marks = mark([...allOf(a), ...allOf(b)]);
    const ack = await emitAck(a.op, 'event:publish', { type: 'dashboard:refresh', room: 'company', payload: { timestamp: new Date().toISOString() } });
    assert.equal(ack.ok, false, JSON.stringify(ack));
    assert.equal(ack.error?.code, 'FORBIDDEN');
    assert.equal(typeof ack.error.message, 'string');
    await sleep(QUIET_MS);
    assert.deepEqual(since(marks), []);
  });
});
