// Rooms: subscribe / unsubscribe / rooms / ping, permissions, room-name
// validation, the per-socket subscription limit and bad payload shapes.
// The server runs with WS_MAX_SUBSCRIPTIONS=3 (rooms beyond the automatic ones).

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { cleanup, connect, emitAck, it, sorted, startServer, token } from './helpers.js';

const LIMIT = 3;
let srv;

before(async () => {
  srv = await startServer({ WS_MAX_SUBSCRIPTIONS: LIMIT }, { name: 'rooms' });
});

after(cleanup);

async function client(t, { sub = 'u1', companyId = 'acme', role = 'operator' } = {}) {
  const { socket } = await connect(srv.url, { auth: { token: token({ sub, companyId, role }) } }, { t });
  return socket;
}

const auto = (sub, role) => ['company', `user:${sub}`, `role:${role}`];

async function roomsOf(socket) {
  const ack = await emitAck(socket, 'rooms');
  assert.equal(ack.ok, true, `rooms ack: ${JSON.stringify(ack)}`);
  return sorted(ack.rooms);
}

function assertDenied(ack, expected) {
  assert.equal(ack.ok, true, `ack: ${JSON.stringify(ack)}`);
  assert.ok(Array.isArray(ack.denied), 'denied is an array');
  const got = ack.denied.map((d) => ({ room: d.room, code: d.code }));
  assert.deepEqual(
    got.sort((a, b) => a.room.localeCompare(b.room)),
    expected.map(([room, code]) => ({ room, code })).sort((a, b) => a.room.localeCompare(b.room)),
  );
  for (const d of ack.denied) assert.ok(typeof d.message === 'string' && d.message.length > 0, `denial has a message: ${JSON.stringify(d)}`);
}

/** unsubscribe ack: { ok: true, rooms: [left] } (a `denied` list may come along). */
function assertLeft(ack, rooms) {
  assert.equal(ack.ok, true, `ack: ${JSON.stringify(ack)}`);
  assert.deepEqual(sorted(ack.rooms), sorted(rooms));
  if (ack.denied !== undefined) assert.deepEqual(ack.denied, []);
}

describe('subscribe: allowed', () => {
  it('{ room } joins an entity room', async (t) => {
    const s = await client(t);
    const ack = await emitAck(s, 'subscribe', { room: 'order:1' });
    assert.deepEqual(ack, { ok: true, rooms: ['order:1'], denied: [] });
    assert.deepEqual(await roomsOf(s), sorted([...auto('u1', 'operator'), 'order:1']));
  });

  it('{ rooms: [...] } joins several', async (t) => {
    const s = await client(t);
    const ack = await emitAck(s, 'subscribe', { rooms: ['machine:m1', 'document:order:67890', 'alarms'] });
    assert.equal(ack.ok, true);
    assert.deepEqual(sorted(ack.rooms), sorted(['machine:m1', 'document:order:67890', 'alarms']));
    assert.deepEqual(ack.denied, []);
    assert.deepEqual(await roomsOf(s), sorted([...auto('u1', 'operator'), 'machine:m1', 'document:order:67890', 'alarms']));
  });

  it('names using every allowed character class are valid', async (t) => {
    const s = await client(t);
    const name = 'reactor_x-1:Reactor-A.b_c@d:59';
    const ack = await emitAck(s, 'subscribe', { room: name });
    assert.deepEqual(ack, { ok: true, rooms: [name], denied: [] });
  });

  it('a 128-byte name is valid', async (t) => {
    const s = await client(t);
    const name = `order:${'x'.repeat(122)}`;
    assert.equal(Buffer.byteLength(name), 128);
    const ack = await emitAck(s, 'subscribe', { room: name });
    assert.deepEqual(ack, { ok: true, rooms: [name], denied: [] });
  });

  it('own user room and own role room are fine (already joined)', async (t) => {
    const s = await client(t, { sub: 'u7', role: 'manager' });
    const ack = await emitAck(s, 'subscribe', { rooms: ['user:u7', 'role:manager', 'company'] });
    assert.equal(ack.ok, true);
    assert.deepEqual(sorted(ack.rooms), sorted(['user:u7', 'role:manager', 'company']));
    assert.deepEqual(ack.denied, []);
    assert.deepEqual(await roomsOf(s), sorted(auto('u7', 'manager')));
  });

  it('subscribing twice to the same room is fine', async (t) => {
    const s = await client(t);
    await emitAck(s, 'subscribe', { room: 'order:2' });
    const again = await emitAck(s, 'subscribe', { room: 'order:2' });
    assert.deepEqual(again, { ok: true, rooms: ['order:2'], denied: [] });
    assert.deepEqual(await roomsOf(s), sorted([...auto('u1', 'operator'), 'order:2']));
  });

  it('admin may join another user\'s and another role\'s rooms', async (t) => {
    const s = await client(t, { sub: 'boss', role: 'admin' });
    const ack = await emitAck(s, 'subscribe', { rooms: ['user:u2', 'role:operator'] });
    assert.equal(ack.ok, true);
    assert.deepEqual(sorted(ack.rooms), ['role:operator', 'user:u2']);
    assert.deepEqual(ack.denied, []);
  });

  it('quality rooms are open to supervisors', async (t) => {
    const s = await client(t, { sub: 's1', role: 'supervisor' });
    const ack = await emitAck(s, 'subscribe', { room: 'quality:batch-7' });
    assert.deepEqual(ack, { ok: true, rooms: ['quality:batch-7'], denied: [] });
  });
});

describe('subscribe: denied', () => {
  it('another user\'s room -> FORBIDDEN', async (t) => {
    const s = await client(t);
    const ack = await emitAck(s, 'subscribe', { room: 'user:u2' });
    assert.deepEqual(ack.rooms, []);
    assertDenied(ack, [['user:u2', 'FORBIDDEN']]);
    assert.deepEqual(await roomsOf(s), sorted(auto('u1', 'operator')));
  });

  it('another role\'s room -> FORBIDDEN (operator, supervisor, manager)', async (t) => {
    for (const [role, other] of [['operator', 'supervisor'], ['supervisor', 'admin'], ['manager', 'operator']]) {
      const s = await client(t, { sub: `r-${role}`, role });
      const ack = await emitAck(s, 'subscribe', { room: `role:${other}` });
      assert.deepEqual(ack.rooms, [], `${role} -> role:${other}`);
      assertDenied(ack, [[`role:${other}`, 'FORBIDDEN']]);
    }
  });

  it('quality rooms are refused to operators -> FORBIDDEN', async (t) => {
    const s = await client(t);
    const ack = await emitAck(s, 'subscribe', { room: 'quality:batch-7' });
    assert.deepEqual(ack.rooms, []);
    assertDenied(ack, [['quality:batch-7', 'FORBIDDEN']]);
  });

  it('mixed request: allowed rooms join, denied ones are listed', async (t) => {
    const s = await client(t);
    const ack = await emitAck(s, 'subscribe', { rooms: ['order:5', 'user:u9', 'Bad Name'] });
    assert.deepEqual(ack.rooms, ['order:5']);
    assertDenied(ack, [['user:u9', 'FORBIDDEN'], ['Bad Name', 'INVALID_ROOM']]);
  });

  it('invalid names -> INVALID_ROOM', async (t) => {
    const s = await client(t);
    const bad = [
      'Order:1', // upper-case kind
      'order:', // empty segment
      'a b', // space
      'x'.repeat(200), // too long
      `order:${'x'.repeat(123)}`, // 129 bytes
      '', // empty
      '9order', // starts with a digit
      'order::1', // empty middle segment
      'order:a/b', // slash
      'order:1;drop', // semicolon
      'ordér:1', // non-ASCII
    ];
    const ack = await emitAck(s, 'subscribe', { rooms: bad });
    assert.deepEqual(ack.rooms, []);
    assertDenied(ack, bad.map((r) => [r, 'INVALID_ROOM']));
    assert.deepEqual(await roomsOf(s), sorted(auto('u1', 'operator')));
  });

  it(`more than WS_MAX_SUBSCRIPTIONS (${LIMIT}) rooms -> LIMIT_EXCEEDED`, async (t) => {
    const s = await client(t);
    const want = ['order:10', 'order:11', 'order:12', 'order:13'];
    const ack = await emitAck(s, 'subscribe', { rooms: want });
    assert.equal(ack.ok, true);
    assert.equal(ack.rooms.length, LIMIT, `joined ${JSON.stringify(ack.rooms)}`);
    assert.equal(ack.denied.length, 1, `denied ${JSON.stringify(ack.denied)}`);
    assert.equal(ack.denied[0].code, 'LIMIT_EXCEEDED');
    assert.deepEqual(sorted([...ack.rooms, ack.denied[0].room]), sorted(want));
    assert.equal((await roomsOf(s)).length, 3 + LIMIT);

    // Still full: a further room is refused...
    const more = await emitAck(s, 'subscribe', { room: 'machine:m9' });
    assert.deepEqual(more.rooms, []);
    assertDenied(more, [['machine:m9', 'LIMIT_EXCEEDED']]);

    // ...re-subscribing to a joined room or an automatic room does not count...
    const again = await emitAck(s, 'subscribe', { rooms: [ack.rooms[0], 'company', 'user:u1'] });
    assert.deepEqual(sorted(again.rooms), sorted([ack.rooms[0], 'company', 'user:u1']));
    assert.deepEqual(again.denied, []);

    // ...and leaving one frees a slot.
    const left = await emitAck(s, 'unsubscribe', { room: ack.rooms[0] });
    assertLeft(left, [ack.rooms[0]]);
    const now = await emitAck(s, 'subscribe', { room: 'machine:m9' });
    assert.deepEqual(now, { ok: true, rooms: ['machine:m9'], denied: [] });
  });

  it('admins are limited too', async (t) => {
    const s = await client(t, { sub: 'boss', role: 'admin' });
    const ack = await emitAck(s, 'subscribe', { rooms: ['user:a', 'user:b', 'user:c', 'user:d', 'user:e'] });
    assert.equal(ack.rooms.length, LIMIT);
    assert.equal(ack.denied.length, 2);
    for (const d of ack.denied) assert.equal(d.code, 'LIMIT_EXCEEDED');
  });
});

describe('subscribe: bad payload shapes -> VALIDATION_FAILED', () => {
  const shapes = [
    ['no argument', undefined],
    ['empty object', {}],
    ['room is a number', { room: 5 }],
    ['room is null', { room: null }],
    ['rooms is a string', { rooms: 'order:1' }],
    ['rooms is an object', { rooms: { a: 'order:1' } }],
    ['a bare string', 'order:1'],
    ['a number', 42],
    ['an array', ['order:1']],
    ['null', null],
  ];
  for (const [label, payload] of shapes) {
    it(label, async (t) => {
      const s = await client(t);
      const ack = await emitAck(s, 'subscribe', payload);
      assert.equal(ack.ok, false, `ack: ${JSON.stringify(ack)}`);
      assert.equal(ack.error?.code, 'VALIDATION_FAILED');
      assert.equal(typeof ack.error.message, 'string');
      assert.ok(ack.error.message.length > 0);
      // The connection survives and nothing was joined.
      assert.deepEqual(await roomsOf(s), sorted(auto('u1', 'operator')));
    });
  }

  it('unsubscribe with a bad payload -> VALIDATION_FAILED', async (t) => {
    const s = await client(t);
    for (const payload of [undefined, {}, { room: 7 }, 'order:1']) {
      const ack = await emitAck(s, 'unsubscribe', payload);
      assert.equal(ack.ok, false, `payload ${JSON.stringify(payload)} -> ${JSON.stringify(ack)}`);
      assert.equal(ack.error?.code, 'VALIDATION_FAILED');
    }
  });
});

describe('unsubscribe and rooms', () => {
  it('unsubscribe { room } and { rooms }', async (t) => {
    const s = await client(t);
    await emitAck(s, 'subscribe', { rooms: ['order:1', 'machine:m1', 'alarms'] });
    const one = await emitAck(s, 'unsubscribe', { room: 'order:1' });
    assertLeft(one, ['order:1']);
    assert.deepEqual(await roomsOf(s), sorted([...auto('u1', 'operator'), 'machine:m1', 'alarms']));
    const two = await emitAck(s, 'unsubscribe', { rooms: ['machine:m1', 'alarms'] });
    assertLeft(two, ['machine:m1', 'alarms']);
    assert.deepEqual(await roomsOf(s), sorted(auto('u1', 'operator')));
  });

  it('automatic rooms cannot be left', async (t) => {
    const s = await client(t, { sub: 'u3', role: 'supervisor' });
    const ack = await emitAck(s, 'unsubscribe', { rooms: ['company', 'user:u3', 'role:supervisor'] });
    assert.equal(typeof ack.ok, 'boolean', `ack: ${JSON.stringify(ack)}`);
    assert.deepEqual(await roomsOf(s), sorted(auto('u3', 'supervisor')));
  });

  it('rooms lists automatic plus subscribed rooms as logical names', async (t) => {
    const s = await client(t, { sub: 'u4', companyId: 'globex', role: 'manager' });
    assert.deepEqual(await roomsOf(s), sorted(auto('u4', 'manager')));
    await emitAck(s, 'subscribe', { room: 'telemetry:59' });
    const ack = await emitAck(s, 'rooms', {});
    assert.equal(ack.ok, true);
    assert.deepEqual(sorted(ack.rooms), sorted([...auto('u4', 'manager'), 'telemetry:59']));
    for (const r of ack.rooms) assert.ok(!r.includes('globex'), `room names are logical (no company id): ${r}`);
  });
});

describe('ping', () => {
  for (const [label, payload] of [['no argument', undefined], ['empty object', {}]]) {
    it(`ping with ${label}`, async (t) => {
      const s = await client(t);
      const before = Date.now();
      const ack = await emitAck(s, 'ping', payload);
      const afterT = Date.now();
      assert.equal(ack.pong, true);
      assert.equal(typeof ack.serverTime, 'number');
      assert.ok(ack.serverTime >= before - 5000 && ack.serverTime <= afterT + 5000, `serverTime ${ack.serverTime} near ${before}`);
    });
  }
});
