// Presence and typing on one node (SPEC §7): user:online / user:offline with
// a grace period (WS_PRESENCE_GRACE_MS, small here), no flap on a quick
// reconnect, several tabs, presence:list for the company and entity rooms,
// user:typing relayed to the room except the sender, throttled, expiring
// after 5 s; presence:joined / presence:left in entity rooms with the same
// grace rule; and another company never sees any of it.
// The two-node cases are in presence-cluster.test.js.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { cleanup, connect, emitAck, expectNoEvent, it, randomId, sleep, startServer, token, waitFor } from './helpers.js';

const GRACE = 1000;
const TYPING_EXPIRY = 5000;
let srv;

before(async () => {
  srv = await startServer({ WS_PRESENCE_GRACE_MS: GRACE }, { name: 'presence' });
});

after(cleanup);

async function client(t, companyId, sub, role, rooms = []) {
  const { socket } = await connect(srv.url, { auth: { token: token({ sub, companyId, role }) } }, { t });
  if (rooms.length) {
    const ack = await emitAck(socket, 'subscribe', { rooms });
    assert.deepEqual(ack.denied, [], JSON.stringify(ack));
  }
  return socket;
}

const named = (socket, prefix) => socket.__events.filter((e) => e.event.startsWith(prefix));

describe('presence', () => {
  it('user:online on the first socket and user:offline after the grace period, with their fields', async (t) => {
    const co = randomId('co-');
    const sup = await client(t, co, 'sup', 'supervisor');
    const gotOnline = waitFor(sup, 'user:online');
    const connectedAt = Date.now();
    const op = await client(t, co, 'op', 'operator');
    const [online] = await gotOnline;
    assert.deepEqual(Object.keys(online).sort(), ['at', 'role', 'userId']);
    assert.equal(online.userId, 'op');
    assert.equal(online.role, 'operator');
    assert.ok(Math.abs(online.at - connectedAt) < 2000, `at ${online.at} is about when op connected (${connectedAt})`);
    assert.deepEqual(named(op, 'user:'), [], 'a socket does not get its own user:online');

    const gotOffline = waitFor(sup, 'user:offline', GRACE + 5000);
    const closedAt = Date.now();
    op.close();
    const [offline] = await gotOffline;
    const waited = Date.now() - closedAt;
    assert.deepEqual(Object.keys(offline).sort(), ['at', 'duration', 'userId']);
    assert.equal(offline.userId, 'op');
    assert.ok(waited >= GRACE - 100, `offline came ${waited} ms after the close, not before the grace period (${GRACE} ms)`);
    assert.ok(Math.abs(offline.at - closedAt) < 1000, `at ${offline.at} is when the socket left (${closedAt})`);
    assert.equal(offline.duration, offline.at - online.at);
    assert.ok(offline.duration >= 0);
  });

  it('a reconnect within the grace period is no offline/online pair', async (t) => {
    const co = randomId('co-');
    const sup = await client(t, co, 'sup', 'supervisor');
    const gotOnline = waitFor(sup, 'user:online');
    const first = await client(t, co, 'op', 'operator');
    await gotOnline;
    const quiet = [expectNoEvent(sup, 'user:offline', GRACE + 1500), expectNoEvent(sup, 'user:online', GRACE + 1500)];
    first.close();
    await sleep(200);
    await client(t, co, 'op', 'operator');
    await Promise.all(quiet);
    const list = await emitAck(sup, 'presence:list');
    assert.deepEqual(list.users.map((u) => [u.userId, u.connections]), [['op', 1], ['sup', 1]]);
  });

  it('two tabs of one user: one user:online, user:offline only after both closed', async (t) => {
    const co = randomId('co-');
    const sup = await client(t, co, 'sup', 'supervisor');
    const gotOnline = waitFor(sup, 'user:online');
    const tab1 = await client(t, co, 'op', 'operator');
    await gotOnline;
    const noSecond = expectNoEvent(sup, 'user:online', 800);
    const tab2 = await client(t, co, 'op', 'operator');
    await noSecond;
    let list = await emitAck(sup, 'presence:list');
    assert.deepEqual(list.users.find((u) => u.userId === 'op')?.connections, 2);

    const notYet = expectNoEvent(sup, 'user:offline', GRACE + 1000);
    tab1.close();
    await notYet;
    list = await emitAck(sup, 'presence:list');
    assert.deepEqual(list.users.find((u) => u.userId === 'op')?.connections, 1);

    const gotOffline = waitFor(sup, 'user:offline', GRACE + 5000);
    tab2.close();
    const [offline] = await gotOffline;
    assert.equal(offline.userId, 'op');
    list = await emitAck(sup, 'presence:list');
    assert.deepEqual(list.users.map((u) => u.userId), ['sup']);
  });

  it('presence:list: the company by default, an entity room\'s subscribers, refusals', async (t) => {
    const co = randomId('co-');
    const sup = await client(t, co, 'sup', 'supervisor');
    const op1 = await client(t, co, 'op', 'operator', ['order:1']);
    await client(t, co, 'op', 'operator');
    const mgr = await client(t, co, 'mgr', 'manager', ['order:1', 'order:2']);

    const list = await emitAck(sup, 'presence:list');
    assert.equal(list.ok, true, JSON.stringify(list));
    assert.deepEqual(
      list.users.map(({ userId, role, connections }) => ({ userId, role, connections })),
      [
        { userId: 'mgr', role: 'manager', connections: 1 },
        { userId: 'op', role: 'operator', connections: 2 },
        { userId: 'sup', role: 'supervisor', connections: 1 },
      ],
    );
    for (const u of list.users) {
      assert.deepEqual(Object.keys(u).sort(), ['connections', 'role', 'since', 'userId']);
      assert.ok(Math.abs(u.since - Date.now()) < 60_000, `since ${u.since}`);
    }
    assert.deepEqual(await emitAck(sup, 'presence:list', { room: 'company' }), list);

    // An entity room lists its subscribers, whether or not the asker is one.
    let room = await emitAck(sup, 'presence:list', { room: 'order:1' });
    assert.deepEqual(room.users.map((u) => [u.userId, u.connections]), [['mgr', 1], ['op', 1]]);
    // Unsubscribed: listed without connections until presence:left (grace period).
    const gotLeft = waitFor(mgr, 'presence:left', GRACE + 5000);
    await emitAck(op1, 'unsubscribe', { room: 'order:1' });
    room = await emitAck(sup, 'presence:list', { room: 'order:1' });
    assert.deepEqual(room.users.map((u) => [u.userId, u.connections]), [['mgr', 1], ['op', 0]]);
    await gotLeft;
    room = await emitAck(sup, 'presence:list', { room: 'order:1' });
    assert.deepEqual(room.users.map((u) => u.userId), ['mgr']);
    room = await emitAck(mgr, 'presence:list', { room: 'order:3' });
    assert.deepEqual(room, { ok: true, users: [] });
    // One's own role room lists that role.
    room = await emitAck(op1, 'presence:list', { room: 'role:operator' });
    assert.deepEqual(room.users.map((u) => u.userId), ['op']);

    // Rooms the socket may not be in are refused, as are bad shapes.
    for (const [socket, data, code] of [
      [op1, { room: 'quality:line-1' }, 'FORBIDDEN'],
      [op1, { room: 'user:sup' }, 'FORBIDDEN'],
      [sup, { room: 'role:operator' }, 'FORBIDDEN'],
      [sup, { room: 'Not A Room' }, 'INVALID_ROOM'],
      [sup, { room: 5 }, 'VALIDATION_FAILED'],
      [sup, 'company', 'VALIDATION_FAILED'],
    ]) {
      const ack = await emitAck(socket, 'presence:list', data);
      assert.equal(ack.ok, false, `${JSON.stringify(data)}: ${JSON.stringify(ack)}`);
      assert.equal(ack.error.code, code, `${JSON.stringify(data)}: ${JSON.stringify(ack)}`);
    }
  });

  it('another company with the same user ids never sees presence or typing signals', async (t) => {
    const [co, other] = [randomId('co-'), randomId('other-')];
    const watcher = await client(t, other, 'sup', 'supervisor', ['order:1']);
    const sup = await client(t, co, 'sup', 'supervisor', ['order:1']);
    const gotOnline = waitFor(sup, 'user:online');
    const op = await client(t, co, 'op', 'operator', ['order:1']);
    await gotOnline;
    const gotTyping = waitFor(sup, 'user:typing');
    assert.deepEqual(await emitAck(op, 'user:typing', { room: 'order:1', isTyping: true }), { ok: true });
    await gotTyping;
    const gotOffline = waitFor(sup, 'user:offline', GRACE + 5000);
    op.close();
    await gotOffline;
    await sleep(300);
    assert.deepEqual(named(watcher, 'user:'), [], 'the other company heard nothing');
    const theirs = await emitAck(watcher, 'presence:list');
    assert.deepEqual(theirs.users.map((u) => u.userId), ['sup']);
    const theirRoom = await emitAck(watcher, 'presence:list', { room: 'order:1' });
    assert.deepEqual(theirRoom.users.map((u) => u.userId), ['sup']);
  });
});

/** [event, userId, room] of the presence:joined / presence:left events `socket` received. */
const roomPresence = (socket) =>
  socket.__events
    .filter((e) => e.event === 'presence:joined' || e.event === 'presence:left')
    .map((e) => [e.event, e.args[0].userId, e.args[0].room]);

async function roomList(socket, room) {
  const ack = await emitAck(socket, 'presence:list', { room });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return ack.users.map((u) => [u.userId, u.connections]);
}

describe('presence in entity rooms', () => {
  it('presence:joined to the other members on a user\'s first socket, presence:left after the grace period on its last', async (t) => {
    const co = randomId('co-');
    const sup = await client(t, co, 'sup', 'supervisor', ['machine:m1']);
    const outsider = await client(t, co, 'mgr', 'manager'); // in the company, not in the room
    const stranger = await client(t, randomId('other-'), 'sup', 'supervisor', ['machine:m1']);
    const gotJoined = waitFor(sup, 'presence:joined');
    const joinedAt = Date.now();
    const tab1 = await client(t, co, 'op', 'operator', ['machine:m1']);
    const [joined] = await gotJoined;
    assert.deepEqual(Object.keys(joined).sort(), ['at', 'role', 'room', 'userId']);
    assert.deepEqual({ ...joined, at: 0 }, { room: 'machine:m1', userId: 'op', role: 'operator', at: 0 });
    assert.ok(Math.abs(joined.at - joinedAt) < 2000, `at ${joined.at} is about when op subscribed (${joinedAt})`);

    // A second tab of the same user joins: no second presence:joined.
    const tab2 = await client(t, co, 'op', 'operator', ['machine:m1']);
    await sleep(300);
    assert.deepEqual(await roomList(sup, 'machine:m1'), [['op', 2], ['sup', 1]]);
    // One tab leaves: the user is still in the room.
    await emitAck(tab1, 'unsubscribe', { room: 'machine:m1' });
    await sleep(GRACE + 800);
    assert.deepEqual(roomPresence(sup), [['presence:joined', 'op', 'machine:m1']]);
    assert.deepEqual(await roomList(sup, 'machine:m1'), [['op', 1], ['sup', 1]]);

    // The last one goes (its socket closes; op stays online through tab1).
    const gotLeft = waitFor(sup, 'presence:left', GRACE + 5000);
    const closedAt = Date.now();
    tab2.close();
    await sleep(200);
    // Within the grace period the user is listed, with no connection in the room.
    assert.deepEqual(await roomList(sup, 'machine:m1'), [['op', 0], ['sup', 1]]);
    const [left] = await gotLeft;
    const waited = Date.now() - closedAt;
    assert.deepEqual(Object.keys(left).sort(), ['at', 'duration', 'room', 'userId']);
    assert.equal(left.room, 'machine:m1');
    assert.equal(left.userId, 'op');
    assert.ok(waited >= GRACE - 100, `presence:left came ${waited} ms after the close, not before the grace period (${GRACE} ms)`);
    assert.ok(Math.abs(left.at - closedAt) < 1000, `at ${left.at} is when the last socket left (${closedAt})`);
    assert.equal(left.duration, left.at - joined.at);
    assert.deepEqual(await roomList(sup, 'machine:m1'), [['sup', 1]]);

    await sleep(200);
    assert.deepEqual(roomPresence(sup), [['presence:joined', 'op', 'machine:m1'], ['presence:left', 'op', 'machine:m1']]);
    assert.deepEqual(named(sup, 'user:offline'), [], 'op is still online (tab1)');
    for (const s of [tab1, outsider, stranger]) assert.deepEqual(roomPresence(s), [], 'only the room\'s other members hear it');
  });

  it('a quick resubscribe or reconnect within the grace period is no left/joined pair; connecting with auth.offsets joins', async (t) => {
    const co = randomId('co-');
    const sup = await client(t, co, 'sup', 'supervisor', ['machine:m2']);
    const gotJoined = waitFor(sup, 'presence:joined');
    // The connect path: an entity room named in auth.offsets is joined before `session`.
    const { socket: first } = await connect(
      srv.url,
      { auth: { token: token({ sub: 'op', companyId: co, role: 'operator' }), offsets: { 'machine:m2': 0 } } },
      { t },
    );
    assert.equal((await gotJoined)[0].userId, 'op');

    await emitAck(first, 'unsubscribe', { room: 'machine:m2' });
    await sleep(200);
    await emitAck(first, 'subscribe', { room: 'machine:m2' });
    first.close();
    await sleep(200);
    const again = await client(t, co, 'op', 'operator', ['machine:m2']);
    await sleep(GRACE + 1500);
    assert.deepEqual(roomPresence(sup), [['presence:joined', 'op', 'machine:m2']], 'no flap');
    assert.deepEqual(await roomList(sup, 'machine:m2'), [['op', 1], ['sup', 1]]);

    const gotOffline = waitFor(sup, 'user:offline', GRACE + 5000);
    again.close();
    assert.equal((await gotOffline)[0].userId, 'op');
    const order = sup.__events.filter((e) => ['presence:left', 'user:offline'].includes(e.event)).map((e) => e.event);
    assert.deepEqual(order, ['presence:left', 'user:offline'], 'the room is left before the company');
  });
});

describe('typing', () => {
  async function floor(t) {
    const co = randomId('co-');
    const sup = await client(t, co, 'sup', 'supervisor', ['order:1']);
    const op = await client(t, co, 'op', 'operator', ['order:1']);
    const mgr = await client(t, co, 'mgr', 'manager'); // in the company, not in order:1
    const stranger = await client(t, randomId('other-'), 'sup', 'supervisor', ['order:1']);
    return { sup, op, mgr, stranger };
  }

  it('relayed to the room\'s other members only: not the sender, not non-members, not another company', async (t) => {
    const { sup, op, mgr, stranger } = await floor(t);
    const got = waitFor(sup, 'user:typing');
    const quiet = [op, mgr, stranger].map((s) => expectNoEvent(s, 'user:typing', 800));
    assert.deepEqual(await emitAck(op, 'user:typing', { room: 'order:1', isTyping: true }), { ok: true });
    assert.deepEqual(await got, [{ room: 'order:1', userId: 'op', isTyping: true }]);
    await Promise.all(quiet);

    const stopped = waitFor(sup, 'user:typing');
    assert.deepEqual(await emitAck(op, 'user:typing', { room: 'order:1', isTyping: false }), { ok: true });
    assert.deepEqual(await stopped, [{ room: 'order:1', userId: 'op', isTyping: false }]);
  });

  it('only into a room the socket is in (FORBIDDEN), bad shapes are VALIDATION_FAILED', async (t) => {
    const { sup, mgr } = await floor(t);
    const quiet = expectNoEvent(sup, 'user:typing', 800);
    let ack = await emitAck(mgr, 'user:typing', { room: 'order:1', isTyping: true });
    assert.equal(ack.error?.code, 'FORBIDDEN', JSON.stringify(ack));
    ack = await emitAck(mgr, 'user:typing', { room: 'user:sup', isTyping: true });
    assert.equal(ack.error?.code, 'FORBIDDEN', JSON.stringify(ack));
    for (const data of [undefined, {}, { room: 'order:1' }, { room: 'order:1', isTyping: 'yes' }, { room: 1, isTyping: true }, [1]]) {
      ack = await emitAck(mgr, 'user:typing', data);
      assert.equal(ack.error?.code, 'VALIDATION_FAILED', `${JSON.stringify(data)}: ${JSON.stringify(ack)}`);
    }
    await quiet;
  });

  it('throttled: one relayed isTyping true per user and room per second, every ack ok', async (t) => {
    const { sup, op } = await floor(t);
    const started = Date.now();
    const acks = await Promise.all([1, 2, 3, 4, 5].map(() => emitAck(op, 'user:typing', { room: 'order:1', isTyping: true })));
    assert.deepEqual(acks, Array(5).fill({ ok: true }));
    await sleep(Math.max(0, 900 - (Date.now() - started)));
    const relayed = () => sup.__events.filter((e) => e.event === 'user:typing' && e.args[0].isTyping).length;
    assert.equal(relayed(), 1, 'five trues within a second: one relay');
    await sleep(Math.max(0, 1100 - (Date.now() - started)));
    const again = waitFor(sup, 'user:typing');
    assert.deepEqual(await emitAck(op, 'user:typing', { room: 'order:1', isTyping: true }), { ok: true });
    assert.deepEqual(await again, [{ room: 'order:1', userId: 'op', isTyping: true }]);
    assert.equal(relayed(), 2);
  });

  it('a typing state not renewed expires after 5 s with isTyping false', { timeout: 20000 }, async (t) => {
    const { sup, op } = await floor(t);
    const got = waitFor(sup, 'user:typing');
    await emitAck(op, 'user:typing', { room: 'order:1', isTyping: true });
    await got;
    const since = Date.now();
    const [expired] = await waitFor(sup, 'user:typing', TYPING_EXPIRY + 3000);
    const after = Date.now() - since;
    assert.deepEqual(expired, { room: 'order:1', userId: 'op', isTyping: false });
    assert.ok(after >= TYPING_EXPIRY - 500 && after <= TYPING_EXPIRY + 2000, `expired after ${after} ms`);
  });

  it('the typing socket going away ends its typing state', async (t) => {
    const { sup, op } = await floor(t);
    const got = waitFor(sup, 'user:typing');
    await emitAck(op, 'user:typing', { room: 'order:1', isTyping: true });
    await got;
    const ended = waitFor(sup, 'user:typing', 2000);
    op.close();
    assert.deepEqual(await ended, [{ room: 'order:1', userId: 'op', isTyping: false }]);
  });
});
