// Presence across nodes (SPEC §7, §9): four server processes sharing Postgres
// and Redis under one random REDIS_PREFIX, with a small grace period and
// WS_PRESENCE_TTL=3 s. Presence counts the sockets of every node: a user
// online via one node is seen on another, moving between nodes within the
// grace period is no flap, a node killed with SIGKILL stops counting within
// the TTL, and a node stopped with SIGTERM hands its users over cleanly.
// The same holds per entity room: one presence:joined / presence:left per
// transition whichever node's sockets cause it.
// Fails (never skips) when Postgres or Redis is unreachable.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import {
  cleanup, connect, emitAck, expectNoEvent, it, privateDatabase, randomId, sleep, startServer, tcpReachable, token, waitFor,
} from './helpers.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const GRACE = 1500;
const TTL_S = 3;
const COMPANY = randomId('presence-co-');
const OTHER = randomId('presence-other-');

let db;
let nodeA;
let nodeB;
let watcher; // another company's supervisor on node B, in the same rooms

before(async () => {
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  const missing = [];
  if (!(await tcpReachable(pg.hostname, Number(pg.port || 5432)))) missing.push(`Postgres at ${pg.hostname}:${pg.port || 5432}`);
  if (!(await tcpReachable(redis.hostname, Number(redis.port || 6379)))) missing.push(`Redis at ${redis.hostname}:${redis.port || 6379}`);
  if (missing.length) {
    throw new Error(`presence cluster suite needs ${missing.join(' and ')}; start them (or set SY_TEST_POSTGRES_URL / SY_TEST_REDIS_URL). This suite does not skip.`);
  }
  // Its own database: other suites' nodes (other Redis prefixes) sweep the
  // shared one's presence rows and could settle our users out of our sight.
  db = await privateDatabase(PG_URL, 'sy_presence');
  nodeA = await node('a');
  nodeB = await node('b');
  watcher = await client(nodeB, 'op5', 'supervisor', { companyId: OTHER, rooms: ['order:9'] });
});

after(cleanup);

const shared = { REDIS_PREFIX: randomId('sy-presence-') };

function node(id) {
  return startServer(
    {
      DATABASE_URL: db,
      REDIS_URL,
      REDIS_PREFIX: shared.REDIS_PREFIX,
      NODE_ID: id,
      WS_PRESENCE_GRACE_MS: GRACE,
      WS_PRESENCE_TTL: TTL_S,
    },
    { name: `node-${id}` },
  );
}

async function client(srv, sub, role, { companyId = COMPANY, rooms = [], t } = {}) {
  const { socket } = await connect(srv.url, { auth: { token: token({ sub, companyId, role }) } }, { t });
  if (rooms.length) {
    const ack = await emitAck(socket, 'subscribe', { rooms });
    assert.deepEqual(ack.denied, [], JSON.stringify(ack));
  }
  return socket;
}

/** The next presence event about `userId` on `socket`. */
function presenceOf(socket, event, userId, ms = 5000) {
  return new Promise((resolve, reject) => {
    const handler = (data) => {
      if (data?.userId !== userId) return;
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(data);
    };
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`no ${event} for ${userId} within ${ms} ms`));
    }, ms);
    socket.on(event, handler);
  });
}

/** Resolves after `ms` unless a presence event about `userId` arrives. */
function noPresenceOf(socket, userId, ms) {
  return new Promise((resolve, reject) => {
    const handler = (event, data) => {
      if ((event === 'user:online' || event === 'user:offline') && data?.userId === userId) {
        clearTimeout(timer);
        socket.offAny(handler);
        reject(new Error(`unexpected ${event} for ${userId}: ${JSON.stringify(data)}`));
      }
    };
    const timer = setTimeout(() => {
      socket.offAny(handler);
      resolve();
    }, ms);
    socket.onAny(handler);
  });
}

/** [event, userId, room] of the presence:joined / presence:left about `userId` that `socket` received. */
const roomPresence = (socket, userId) =>
  socket.__events
    .filter((e) => (e.event === 'presence:joined' || e.event === 'presence:left') && e.args[0]?.userId === userId)
    .map((e) => [e.event, e.args[0].userId, e.args[0].room]);

async function listed(socket, room) {
  const ack = await emitAck(socket, 'presence:list', room ? { room } : undefined);
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return Object.fromEntries(ack.users.map((u) => [u.userId, u.connections]));
}

describe('presence over two nodes', () => {
  it('a user online via node A is seen by a supervisor on node B, and listed there', async (t) => {
    const sup = await client(nodeB, 'sup1', 'supervisor', { t });
    const online = presenceOf(sup, 'user:online', 'op1');
    await client(nodeA, 'op1', 'operator', { t });
    const data = await online;
    assert.equal(data.role, 'operator');
    assert.equal(typeof data.at, 'number');
    assert.equal((await listed(sup)).op1, 1);
  });

  it('moving a socket from A to B within the grace period is no flap; leaving B is an offline', async (t) => {
    const sup = await client(nodeB, 'sup2', 'supervisor', { t });
    const online = presenceOf(sup, 'user:online', 'op2');
    const onA = await client(nodeA, 'op2', 'operator', { t });
    await online;
    const quiet = noPresenceOf(sup, 'op2', GRACE + 2000);
    onA.close();
    await sleep(200);
    const onB = await client(nodeB, 'op2', 'operator', { t });
    await quiet;
    assert.equal((await listed(sup)).op2, 1);

    const offline = presenceOf(sup, 'user:offline', 'op2', GRACE + 5000);
    onB.close();
    const data = await offline;
    assert.ok(data.duration >= GRACE, `online for ${data.duration} ms across both nodes`);
    assert.equal((await listed(sup)).op2, undefined);
  });

  it('two tabs on two nodes: one user:online, user:offline only after both closed', async (t) => {
    const sup = await client(nodeA, 'sup3', 'supervisor', { t });
    const online = presenceOf(sup, 'user:online', 'op3');
    const tabA = await client(nodeA, 'op3', 'operator', { t });
    await online;
    const noMore = noPresenceOf(sup, 'op3', GRACE + 1500);
    const tabB = await client(nodeB, 'op3', 'operator', { t });
    assert.equal((await listed(sup)).op3, 2, 'sockets of both nodes are counted');
    tabA.close();
    await noMore;
    assert.equal((await listed(sup)).op3, 1);
    const offline = presenceOf(sup, 'user:offline', 'op3', GRACE + 5000);
    tabB.close();
    await offline;
  });

  it('entity-room lists and typing work across nodes', async (t) => {
    const sup = await client(nodeB, 'sup4', 'supervisor', { t, rooms: ['order:9'] });
    const op = await client(nodeA, 'op4', 'operator', { t, rooms: ['order:9'] });
    assert.deepEqual(await listed(sup, 'order:9'), { op4: 1, sup4: 1 });
    const typing = waitFor(sup, 'user:typing');
    const notSelf = expectNoEvent(op, 'user:typing', 700);
    assert.deepEqual(await emitAck(op, 'user:typing', { room: 'order:9', isTyping: true }), { ok: true });
    assert.deepEqual(await typing, [{ room: 'order:9', userId: 'op4', isTyping: true }]);
    await notSelf;
    const left = presenceOf(sup, 'presence:left', 'op4', GRACE + 5000);
    await emitAck(op, 'unsubscribe', { room: 'order:9' });
    // Listed without connections until presence:left (grace period).
    assert.deepEqual(await listed(sup, 'order:9'), { op4: 0, sup4: 1 });
    await left;
    assert.deepEqual(await listed(sup, 'order:9'), { sup4: 1 });
  });

  it('entity rooms: joined on A is announced on B once, a second tab and a quick move are silent, the last leave is one presence:left', { timeout: 40000 }, async (t) => {
    const room = 'machine:x1';
    const watch = await client(nodeB, 'sup8', 'supervisor', { t, rooms: [room] });
    const joined = presenceOf(watch, 'presence:joined', 'op8');
    const tabA = await client(nodeA, 'op8', 'operator', { t, rooms: [room] });
    const data = await joined;
    assert.deepEqual({ ...data, at: 0 }, { room, userId: 'op8', role: 'operator', at: 0 });

    // A second tab, on the other node: no second presence:joined.
    const tabB = await client(nodeB, 'op8', 'operator', { t, rooms: [room] });
    assert.deepEqual(await listed(watch, room), { op8: 2, sup8: 1 }, 'sockets of both nodes are counted');
    // The first tab goes; then the second moves from B to A within the grace period.
    tabA.close();
    await sleep(300);
    await emitAck(tabB, 'unsubscribe', { room });
    await sleep(200);
    const moved = await client(nodeA, 'op8', 'operator', { t, rooms: [room] });
    await sleep(GRACE + 1500);
    assert.deepEqual(roomPresence(watch, 'op8'), [['presence:joined', 'op8', room]], 'no flap');
    assert.deepEqual(await listed(watch, room), { op8: 1, sup8: 1 });

    const left = presenceOf(watch, 'presence:left', 'op8', GRACE + 5000);
    await emitAck(moved, 'unsubscribe', { room });
    const leftData = await left;
    assert.equal(leftData.room, room);
    assert.ok(leftData.duration >= GRACE, `in the room for ${leftData.duration} ms across both nodes`);
    await sleep(GRACE + 500); // the settle timers of the other departures find nothing more
    assert.deepEqual(roomPresence(watch, 'op8'), [['presence:joined', 'op8', room], ['presence:left', 'op8', room]]);
    assert.deepEqual(await listed(watch, room), { sup8: 1 });
  });

  it('the users of a node killed with SIGKILL go offline and leave their rooms within the TTL', { timeout: 40000 }, async (t) => {
    const doomed = await node('k');
    const room = 'machine:k1';
    const sup = await client(nodeB, 'sup5', 'supervisor', { t, rooms: [room] });
    const online = presenceOf(sup, 'user:online', 'op5');
    const joined = presenceOf(sup, 'presence:joined', 'op5');
    await client(doomed, 'op5', 'operator', { t, rooms: [room] });
    await online;
    await joined;
    // A user with a socket on the dead node and one on a live node stays online and in the room.
    await client(doomed, 'op6', 'operator', { t, rooms: [room] });
    await client(nodeA, 'op6', 'operator', { t, rooms: [room] });
    assert.deepEqual([(await listed(sup)).op5, (await listed(sup)).op6], [1, 2]);

    const offline = presenceOf(sup, 'user:offline', 'op5', TTL_S * 1000 * 3);
    const roomLeft = presenceOf(sup, 'presence:left', 'op5', TTL_S * 1000 * 3);
    const survivor = noPresenceOf(sup, 'op6', TTL_S * 1000 * 2);
    const killedAt = Date.now();
    doomed.proc.kill('SIGKILL');
    const data = await offline;
    const took = Date.now() - killedAt;
    assert.ok(took <= TTL_S * 1000 + 3000, `offline ${took} ms after the kill (TTL ${TTL_S} s)`);
    assert.ok(data.at <= killedAt + 100, `at (${data.at}) is the dead node's last heartbeat, before the kill (${killedAt})`);
    assert.ok(data.at >= killedAt - (TTL_S * 1000) / 3 - 1000, `at (${data.at}) is a recent heartbeat`);
    const leftData = await roomLeft;
    assert.equal(leftData.room, room);
    assert.ok(leftData.at <= killedAt + 100, `presence:left at (${leftData.at}) is the dead node's last heartbeat`);
    await survivor;
    const list = await listed(sup);
    assert.equal(list.op5, undefined);
    assert.equal(list.op6, 1);
    assert.deepEqual(await listed(sup, room), { op6: 1, sup5: 1 });
    assert.deepEqual(roomPresence(sup, 'op5'), [['presence:joined', 'op5', room], ['presence:left', 'op5', room]]);
    assert.deepEqual(roomPresence(sup, 'op6'), [['presence:joined', 'op6', room]]);
    await doomed.stop();
  });

  it('SIGTERM: clients that reconnect elsewhere within the grace period stay online and in their rooms, the others go', { timeout: 40000 }, async (t) => {
    const leaving = await node('g');
    const room = 'machine:g1';
    const sup = await client(nodeB, 'sup7', 'supervisor', { t, rooms: [room] });
    const bothOnline = [presenceOf(sup, 'user:online', 'mover'), presenceOf(sup, 'user:online', 'goner')];
    const mover = await client(leaving, 'mover', 'operator', { t, rooms: [room] });
    await client(leaving, 'goner', 'operator', { t, rooms: [room] });
    await Promise.all(bothOnline);

    const moved = noPresenceOf(sup, 'mover', GRACE + 4000);
    const gone = presenceOf(sup, 'user:offline', 'goner', GRACE + 6000);
    const goneFromRoom = presenceOf(sup, 'presence:left', 'goner', GRACE + 6000);
    const disconnected = waitFor(mover, 'disconnect', 10000);
    const stopped = leaving.stop();
    await disconnected;
    // What socket.io clients do: reconnect (and resubscribe), here to another node.
    await client(nodeA, 'mover', 'operator', { t, rooms: [room] });
    const exit = await stopped;
    assert.equal(exit.code, 0, `graceful exit: ${JSON.stringify(exit)}`);
    await gone;
    assert.equal((await goneFromRoom).room, room);
    await moved;
    const list = await listed(sup);
    assert.equal(list.mover, 1);
    assert.equal(list.goner, undefined);
    assert.deepEqual(await listed(sup, room), { mover: 1, sup7: 1 });
    assert.deepEqual(roomPresence(sup, 'mover'), [['presence:joined', 'mover', room]], 'the mover never left the room');
  });

  it('another company on node B heard none of it', async () => {
    await sleep(300);
    const heard = watcher.__events.filter((e) => e.event.startsWith('user:') || e.event.startsWith('presence:'));
    assert.deepEqual(heard, []);
    assert.deepEqual(await listed(watcher), { op5: 1 });
  });
});
