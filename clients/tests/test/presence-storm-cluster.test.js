// The presence storm rule across nodes (docs/protocol.md, "Large companies"):
// company-wide `user:online` / `user:offline` go to the whole company only
// while it has at most WS_PRESENCE_BROADCAST_MAX users online; above it each
// transition is announced once, in a `presence:batch`, to the sessions that
// asked with `presence:list { batches: true }`, on every node.
//
// Two nodes on Postgres + Redis, WS_PRESENCE_BROADCAST_MAX=5. Five observers
// bring the company to the bound (socket.io clients with and without batches
// on both nodes, and a plain-WebSocket client with batches); then sixteen
// users arrive at once, split over both nodes, four of them with a tab on
// each node; later they all leave at once. Fails (never skips) when Postgres
// or Redis is not reachable.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { cleanup, connect, emitAck, it, privateDatabase, randomId, sleep, startServer, requireServices, token, waitUntil } from './helpers.js';
import { closeAllPlain, wsSession, wsUrl } from './plain.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const MAX = 5;
const GRACE = 800;
const CO = randomId('storm-');
let nodeA;
let nodeB;

before(async () => {
  await requireServices(PG_URL, REDIS_URL);
  const shared = {
    // Its own database: other suites' nodes sweep the shared one's presence rows.
    DATABASE_URL: await privateDatabase(PG_URL, 'sy_storm'),
    REDIS_URL,
    REDIS_PREFIX: randomId('sy-storm-'),
    WS_PRESENCE_BROADCAST_MAX: MAX,
    WS_PRESENCE_GRACE_MS: GRACE,
    WS_RATE_LIMIT: 1000,
  };
  // One after the other: they migrate the same database.
  nodeA = await startServer({ ...shared, NODE_ID: 'storm-a' }, { name: 'node-a' });
  nodeB = await startServer({ ...shared, NODE_ID: 'storm-b' }, { name: 'node-b' });
});

after(async () => {
  closeAllPlain();
  await cleanup();
});

const tok = (sub) => token({ sub, companyId: CO, role: 'operator' });

async function io(node, sub) {
  const { socket } = await connect(node.url, { auth: { token: tok(sub) } });
  return socket;
}

/** What an observer heard: per-user frames and batch entries, by user. */
function heardIo(socket) {
  const out = { online: [], offline: [], batchOnline: [], batchOffline: [], batches: 0 };
  for (const { event, args } of socket.__events) {
    if (event === 'user:online') out.online.push(args[0].userId);
    if (event === 'user:offline') out.offline.push(args[0].userId);
    if (event === 'presence:batch') {
      out.batches++;
      out.batchOnline.push(...args[0].online.map((e) => e.userId));
      out.batchOffline.push(...args[0].offline.map((e) => e.userId));
    }
  }
  return out;
}

function heardWs(client) {
  const out = { online: [], offline: [], batchOnline: [], batchOffline: [], batches: 0 };
  for (const m of client.messages) {
    if (m.type === 'user:online') out.online.push(m.payload.userId);
    if (m.type === 'user:offline') out.offline.push(m.payload.userId);
    if (m.type === 'presence:batch') {
      out.batches++;
      out.batchOnline.push(...m.payload.online.map((e) => e.userId));
      out.batchOffline.push(...m.payload.offline.map((e) => e.userId));
    }
  }
  return out;
}

const only = (list, users) => list.filter((u) => users.includes(u));
const sorted = (a) => [...a].sort();

async function listed(socket) {
  const ack = await emitAck(socket, 'presence:list', {});
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return Object.fromEntries(ack.users.map((u) => [u.userId, u.connections]));
}

describe('presence storm over two nodes', () => {
  it('above the bound: no per-user frames, batches from both nodes on both nodes, each transition once, lists exact', { timeout: 60000 }, async () => {
    // Five observers: the company is at the bound.
    const watchA = await io(nodeA, 'watch-a');
    assert.equal((await emitAck(watchA, 'presence:list', { batches: true })).ok, true);
    const watchB = await io(nodeB, 'watch-b');
    assert.equal((await emitAck(watchB, 'presence:list', { batches: true })).ok, true);
    const quietA = await io(nodeA, 'quiet-a');
    const quietB = await io(nodeB, 'quiet-b');
    const { c: wsWatch } = await wsSession(wsUrl(nodeB, '/ws', `?token=${tok('ws-watch')}`));
    const wsList = await wsWatch.request({ type: 'presence:list', batches: true });
    assert.equal(wsList.users?.length, MAX, JSON.stringify(wsList));
    const observers = ['watch-a', 'watch-b', 'quiet-a', 'quiet-b', 'ws-watch'];
    // Under the bound: per-user frames, as always.
    await waitUntil(() => heardIo(watchA).online.includes('ws-watch'), 5000, 'user:online for the fifth observer');
    assert.deepEqual(sorted(heardIo(watchA).online), sorted(observers.slice(1)));

    // The storm: 16 users at once over both nodes; 4 of them with a tab on each node.
    const storm = Array.from({ length: 16 }, (_, i) => `storm-${i}`);
    const plan = storm.flatMap((u, i) => (i < 4 ? [[nodeA, u], [nodeB, u]] : [[i % 2 ? nodeB : nodeA, u]]));
    const sockets = await Promise.all(plan.map(([node, u]) => io(node, u)));
    const ioObservers = { 'watch-a': watchA, 'watch-b': watchB, 'quiet-a': quietA, 'quiet-b': quietB };
    const batchers = () => [['watch-a', heardIo(watchA)], ['watch-b', heardIo(watchB)], ['ws-watch', heardWs(wsWatch)]];
    await waitUntil(
      () => batchers().every(([, h]) => only([...h.online, ...h.batchOnline], storm).length >= storm.length),
      5000,
      `every arrival announced to every batcher: ${JSON.stringify(batchers().map(([n, h]) => [n, sorted(only([...h.online, ...h.batchOnline], storm))]))}`,
    );
    await sleep(600); // later batches (250 ms each) and any stray per-user frame
    for (const [name, h] of [...batchers(), ['quiet-a', heardIo(quietA)], ['quiet-b', heardIo(quietB)]]) {
      assert.deepEqual(only(h.online, storm), [], `${name}: no user:online beyond the bound`);
    }
    for (const [name, h] of batchers()) {
      const got = only(h.batchOnline, storm);
      assert.deepEqual(sorted(got), storm.slice().sort(), `${name}: each arrival once, in batches`);
      // Each node batches its own transitions: users of both nodes reach both nodes.
      assert.ok(got.some((u) => Number(u.slice(6)) % 2 === 1 && Number(u.slice(6)) >= 4), `${name}: batched arrivals from node B`);
      assert.ok(got.some((u) => Number(u.slice(6)) % 2 === 0 && Number(u.slice(6)) >= 4), `${name}: batched arrivals from node A`);
    }
    for (const [name, h] of [['quiet-a', heardIo(quietA)], ['quiet-b', heardIo(quietB)]]) {
      assert.equal(h.batches, 0, `${name} did not ask for batches`);
    }
    // presence:list is exact on both nodes.
    const want = Object.fromEntries([...observers, ...storm].map((u) => [u, storm.indexOf(u) >= 0 && storm.indexOf(u) < 4 ? 2 : 1]));
    for (const [name, s] of Object.entries(ioObservers)) assert.deepEqual(await listed(s), want, `${name}: presence:list`);
    const wsUsers = (await wsWatch.request({ type: 'presence:list' })).users;
    assert.deepEqual(Object.fromEntries(wsUsers.map((u) => [u.userId, u.connections])), want, 'ws-watch: presence:list');

    // Everyone of the storm leaves at once.
    for (const s of sockets) s.__close();
    await waitUntil(
      () => batchers().every(([, h]) => only([...h.offline, ...h.batchOffline], storm).length >= storm.length),
      GRACE + 8000,
      `every departure announced to every batcher: ${JSON.stringify(batchers().map(([n, h]) => [n, sorted(only([...h.offline, ...h.batchOffline], storm))]))}`,
    );
    await sleep(600);
    for (const [name, h] of batchers()) {
      const perUser = only(h.offline, storm);
      // Only the departure that brought the company back to the bound may go out per user.
      assert.ok(perUser.length <= 1, `${name}: user:offline beyond the bound: ${perUser}`);
      assert.deepEqual(sorted([...perUser, ...only(h.batchOffline, storm)]), storm.slice().sort(), `${name}: each departure once`);
      // One transition per offline→online: nobody (two tabs or not) arrived twice.
      assert.deepEqual(sorted(only([...h.online, ...h.batchOnline], storm)), storm.slice().sort(), `${name}: each arrival once`);
    }
    for (const [name, h] of [['quiet-a', heardIo(quietA)], ['quiet-b', heardIo(quietB)]]) {
      assert.ok(only(h.offline, storm).length <= 1, `${name}: user:offline beyond the bound`);
      assert.equal(h.batches, 0, `${name} did not ask for batches`);
    }
    console.log(`batches received (arrivals + departures): ${batchers().map(([n, h]) => `${n} ${h.batches}`).join(', ')}; per-user user:offline: ${only(heardIo(watchA).offline, storm).length}`);
    const back = Object.fromEntries(observers.map((u) => [u, 1]));
    for (const [name, s] of Object.entries(ioObservers)) assert.deepEqual(await listed(s), back, `${name}: presence:list after`);
  });
});
