// Offline queue and exact replay (SPEC §5) with the real socket.io-client:
// what a client missed while away arrives before `session`, in order, once;
// resume with auth.offsets is exact while publishing goes on; cursors live in
// the database, so a client can come back on another node.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe } from 'node:test';
import { cleanup, connect, emitAck, it, privateDatabase, randomId, sleep, startServer, tcpReachable, token, waitUntil } from './helpers.js';

const API_KEY = 'replay-test-key';
const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

// Short heartbeats: an unchanged client's cursor counts an event as processed
// once the heartbeat proves it, `max(interval, timeout) + timeout + 2 s` after
// it was sent (docs/protocol.md); with these settings that is 3 s.
const HEARTBEAT = { WS_PING_INTERVAL: 500, WS_PING_TIMEOUT: 500 };
const PROOF_MS = 3300;

let srv;
before(async () => {
  srv = await startServer({ API_KEYS: API_KEY, ...HEARTBEAT }, { name: 'replay' });
});
after(cleanup);

const orderPayload = (n) => ({ orderId: String(n), oldStatus: 'pending', newStatus: 'in_progress', timestamp: new Date().toISOString(), n });

async function publish(server, events) {
  const res = await fetch(`${server.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(events),
  });
  const body = await res.json();
  assert.equal(res.status, 202, JSON.stringify(body));
  return body.events;
}

function order(companyId, n, target = {}) {
  return { type: 'order:status_changed', companyId, payload: orderPayload(n), ...target };
}

/** Connects and records every durable event (name, payload, meta) until `session`. */
async function connectRecording(url, auth, opts = {}) {
  const received = [];
  const { socket, session } = await connect(url, { auth, ...opts }, {
    timeoutMs: 120000,
    onSocket: (s) => s.onAny((event, payload, meta) => {
      if (meta && typeof meta.offset === 'number') received.push({ event, payload, meta });
    }),
  });
  return { socket, session, received };
}

async function leave(socket) {
  socket.disconnect();
  await sleep(300); // the server saves the cursor on disconnect
}

/** Stays until the heartbeat proved the client processed what it got, then leaves. */
async function leaveProven(socket) {
  await sleep(PROOF_MS);
  await leave(socket);
}

describe('offline queue for unchanged clients', () => {
  it('50 durable events to company, user and role rooms arrive in order before session; ephemeral ones do not', async () => {
    const co = randomId('co-');
    const auth = { token: token({ sub: 'u1', companyId: co, role: 'operator' }) };
    const first = await connectRecording(srv.url, auth);
    assert.equal(first.session.replayed, 0);
    await leave(first.socket);

    const targets = [{}, { users: ['u1'] }, { roles: ['operator'] }];
    for (let n = 0; n < 50; n++) {
      await publish(srv, [order(co, n, targets[n % 3])]);
      if (n % 10 === 0) {
        await publish(srv, [{ type: 'dashboard:refresh', companyId: co, payload: { timestamp: new Date().toISOString() } }]);
      }
    }
    // Someone else's events are not queued for u1.
    await publish(srv, [order(co, 999, { users: ['u2'] }), order(randomId('other-'), 998)]);

    const again = await connectRecording(srv.url, auth);
    assert.equal(again.session.replayed, 50);
    assert.deepEqual(again.received.map((r) => r.payload.n), [...Array(50).keys()], 'all 50, in publish order');
    assert.ok(again.received.every((r) => r.event === 'order:status_changed'), 'no ephemeral event replayed');
    const rooms = new Set(again.received.map((r) => r.meta.room));
    assert.deepEqual([...rooms].sort(), ['company', 'role:operator', 'user:u1']);
    // Per room, offsets are contiguous.
    for (const room of rooms) {
      const offs = again.received.filter((r) => r.meta.room === room).map((r) => r.meta.offset);
      assert.deepEqual(offs, offs.map((_, i) => offs[0] + i), `${room} contiguous`);
    }
    await leaveProven(again.socket);
    const third = await connectRecording(srv.url, auth);
    assert.equal(third.session.replayed, 0, 'nothing the heartbeat proved processed is replayed');
    // A session that received nothing writes no cursor when it ends (the
    // stored one is already right); its device must still resume there.
    await leave(third.socket);
    for (let n = 50; n < 53; n++) await publish(srv, [order(co, n, targets[n % 3])]);
    const fourth = await connectRecording(srv.url, auth);
    assert.deepEqual(fourth.received.map((r) => r.payload.n), [50, 51, 52], 'exactly what came after');
  });

  it("a new device's own room keeps what was addressed to the user before and while it was away", async () => {
    const co = randomId('co-');
    await publish(srv, [order(co, 0, { users: ['u1'] })]);
    const auth = { token: token({ sub: 'u1', companyId: co, role: 'operator' }), deviceId: 'new-tablet' };
    // Its first connect stores no cursor for `user:u1` (none means from the start).
    const first = await connectRecording(srv.url, auth);
    assert.deepEqual(first.received.map((r) => r.payload.n), [0]);
    await leaveProven(first.socket);
    await publish(srv, [order(co, 1, { users: ['u1'] }), order(co, 2)]);
    const again = await connectRecording(srv.url, auth);
    assert.deepEqual(again.received.map((r) => r.payload.n), [1, 2], 'no duplicate, nothing lost');
  });

  it('two devices of one user each get their own missed events', async () => {
    const co = randomId('co-');
    const tok = token({ sub: 'u1', companyId: co, role: 'operator' });
    const d1 = { token: tok, deviceId: 'tablet-1' };
    const d2 = { token: tok, deviceId: 'phone-2' };
    await leave((await connectRecording(srv.url, d1)).socket);
    await leave((await connectRecording(srv.url, d2)).socket);
    for (let n = 0; n < 5; n++) await publish(srv, [order(co, n, { users: ['u1'] })]);
    const a = await connectRecording(srv.url, d1);
    assert.deepEqual(a.received.map((r) => r.payload.n), [0, 1, 2, 3, 4]);
    await leaveProven(a.socket);
    for (let n = 5; n < 8; n++) await publish(srv, [order(co, n, { users: ['u1'] })]);
    const b = await connectRecording(srv.url, d2);
    assert.deepEqual(b.received.map((r) => r.payload.n), [0, 1, 2, 3, 4, 5, 6, 7]);
    await leave(b.socket);
    const a2 = await connectRecording(srv.url, d1);
    assert.deepEqual(a2.received.map((r) => r.payload.n), [5, 6, 7]);
  });

  it('events:ack advances the stored cursor', async () => {
    const co = randomId('co-');
    const auth = { token: token({ sub: 'u1', companyId: co, role: 'operator' }), deviceId: 'acker' };
    await leave((await connectRecording(srv.url, auth)).socket);
    for (let n = 0; n < 4; n++) await publish(srv, [order(co, n)]);
    const c = await connectRecording(srv.url, auth);
    assert.equal(c.received.length, 4);
    const ack = await emitAck(c.socket, 'events:ack', { room: 'company', offset: c.received[1].meta.offset });
    assert.deepEqual(ack, { ok: true, room: 'company', offset: c.received[1].meta.offset });
    await leave(c.socket);
    const d = await connectRecording(srv.url, auth);
    assert.deepEqual(d.received.map((r) => r.payload.n), [2, 3], 'resumes after the acknowledged offset');
    const bad = await emitAck(d.socket, 'events:ack', { room: 'company', offset: 'x' });
    assert.equal(bad.error.code, 'VALIDATION_FAILED');
  });
});

describe('exact resume with auth.offsets', () => {
  it('no gap and no duplicate while a publisher keeps publishing (20 reconnects)', { timeout: 120000 }, async (t) => {
    const co = randomId('co-');
    const tok = token({ sub: 'watcher', companyId: co, role: 'operator' });
    let publishing = true;
    let published = 0;
    let lastOffset = 0;
    const publisher = (async () => {
      while (publishing) {
        const [ev] = await publish(srv, [order(co, published++)]);
        lastOffset = ev.offsets.company;
        await sleep(3);
      }
    })();
    await waitUntil(() => published > 5, 5000, 'publisher started');
    const seen = [];
    const rounds = [];
    let last = 0;
    for (let round = 0; round < 20; round++) {
      rounds.push(last);
      const { socket } = await connect(srv.url, { auth: { token: tok, offsets: { company: last } } }, {
        onSocket: (s) => s.onAny((event, payload, meta) => {
          if (meta?.room === 'company') seen.push(meta.offset);
        }),
      });
      await sleep(20 + Math.floor(Math.random() * 80));
      socket.disconnect();
      last = seen.length ? seen[seen.length - 1] : last;
    }
    publishing = false;
    await publisher;
    const { socket } = await connect(srv.url, { auth: { token: tok, offsets: { company: last } } }, {
      onSocket: (s) => s.onAny((event, payload, meta) => {
        if (meta?.room === 'company') seen.push(meta.offset);
      }),
    });
    await waitUntil(() => seen[seen.length - 1] === lastOffset, 10000, `catching up to ${lastOffset}`).catch((e) => { const dups = seen.filter((o, i) => seen.indexOf(o) !== i); const gaps = seen.filter((o, i) => i > 0 && o !== seen[i - 1] + 1).map((o) => [seen[seen.indexOf(o) - 1], o]); throw new Error(`${e.message}: seen ${seen.length}, tail ${seen.slice(-5)}, dups ${dups.slice(0, 10)}, jumps ${JSON.stringify(gaps.slice(0, 10))}`); });
    socket.disconnect();
    const expected = Array.from({ length: lastOffset }, (_, i) => i + 1).filter((o) => o > seen[0] - 1);
    assert.equal(seen[0], 1, 'starts right after offset 0');
    const dups = seen.filter((o, i) => seen.indexOf(o) !== i);
    const jumps = seen.map((o, i) => [seen[i - 1], o]).filter(([p, o], i) => i > 0 && o !== p + 1);
    assert.deepEqual(seen, expected, `contiguous 1..${lastOffset}: no gap, no duplicate (duplicates ${JSON.stringify(dups.slice(0, 10))}, jumps ${JSON.stringify(jumps.slice(0, 10))}, rounds ${JSON.stringify(rounds)})`);
    assert.ok(lastOffset >= 100, `the publisher ran during the reconnects (${lastOffset} events)`);
    t.diagnostic(`20 reconnects with auth.offsets while publishing: ${seen.length} events received, offsets 1..${lastOffset} contiguous, 0 gaps, 0 duplicates`);
  });

  it('subscribe with offsets replays an entity room, then goes live', async () => {
    const co = randomId('co-');
    for (let n = 0; n < 6; n++) await publish(srv, [order(co, n, { rooms: ['order:7'] })]);
    const { socket } = await connectRecording(srv.url, { token: token({ sub: 'u9', companyId: co, role: 'operator' }) });
    const got = [];
    socket.on('order:status_changed', (p, meta) => got.push(meta.offset));
    const ack = await emitAck(socket, 'subscribe', { rooms: ['order:7'], offsets: { 'order:7': 2 } });
    assert.equal(ack.ok, true);
    assert.equal(ack.replayed, 4);
    await publish(srv, [order(co, 6, { rooms: ['order:7'] })]);
    await waitUntil(() => got.length === 5, 5000, 'replayed + live');
    assert.deepEqual(got, [3, 4, 5, 6, 7]);
  });
});

describe('retention', () => {
  let short;
  before(async () => {
    short = await startServer({ API_KEYS: API_KEY, WS_MESSAGE_QUEUE_TTL: 1 }, { name: 'replay-ttl' });
  });

  it('an expired event is not replayed, a critical one is, and the gap is announced', async () => {
    const co = randomId('co-');
    const auth = { token: token({ sub: 'u1', companyId: co, role: 'operator' }) };
    await leave((await connectRecording(short.url, auth)).socket);
    await publish(short, [order(co, 1)]);
    await publish(short, [{ ...order(co, 2), priority: 'critical' }]);
    await sleep(2200);
    const c = await connectRecording(short.url, auth);
    assert.deepEqual(c.received.map((r) => [r.payload.n, r.meta.priority]), [[2, 'critical']]);
    await leave(c.socket);
    // A resume from before the retained history says so first.
    const notices = [];
    const { socket } = await connect(short.url, { auth: { ...auth, offsets: { company: 0 } } }, {
      onSocket: (s) => s.on('replay:truncated', (t) => notices.push(t)),
    });
    assert.deepEqual(notices, [{ room: 'company', oldestOffset: 2 }]);
    socket.disconnect();
  });
});

describe('bounded replay', () => {
  // Default heartbeats (25 s / 20 s) here: with the 500 ms ones above, a
  // client still parsing 20,000 events on a loaded machine answers a ping
  // late and is rightly cut off, which is not what this test measures.
  let bulk;
  before(async () => {
    bulk = await startServer({ API_KEYS: API_KEY }, { name: 'replay-bulk' });
  });

  it('20,000 queued events replay completely; server RSS stays bounded', { timeout: 240000 }, async (t) => {
    const co = randomId('co-');
    const auth = { token: token({ sub: 'bulk', companyId: co, role: 'operator' }) };
    await leave((await connectRecording(bulk.url, auth)).socket);
    const total = 20000;
    for (let start = 0; start < total; start += 1000) {
      await publish(bulk, Array.from({ length: 1000 }, (_, i) => order(co, start + i, { users: ['bulk'] })));
    }
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${bulk.proc.pid}/status`, 'utf8'))[1]);
    const before = rss();
    const started = Date.now();
    let peak = before;
    // unref + finally: a failed connect must not leave a timer that keeps
    // this test file's process (and with it the whole suite) alive.
    const sampler = setInterval(() => { peak = Math.max(peak, rss()); }, 50).unref();
    let c;
    try {
      c = await connectRecording(bulk.url, auth);
    } finally {
      clearInterval(sampler);
    }
    const ms = Date.now() - started;
    assert.equal(c.session.replayed, total);
    assert.equal(c.received.length, total);
    assert.ok(c.received.every((r, i) => r.payload.n === i), 'in order, none missing');
    const growthMb = (peak - before) / 1024;
    t.diagnostic(`replayed ${total} events in ${ms} ms; server RSS ${Math.round(before / 1024)} MB before, peak ${Math.round(peak / 1024)} MB (+${growthMb.toFixed(1)} MB)`);
    assert.ok(growthMb < 64, `RSS grew ${growthMb.toFixed(1)} MB replaying ${total} events`);
  });
});

describe('cluster: leave node A, come back on node B', () => {
  let a;
  let b;
  before(async () => {
    const pg = new URL(PG_URL);
    const redis = new URL(REDIS_URL);
    if (!(await tcpReachable(pg.hostname, Number(pg.port || 5432))) || !(await tcpReachable(redis.hostname, Number(redis.port || 6379)))) {
      throw new Error('the replay cluster suite needs Postgres and Redis (see scripts/test.sh); it does not skip');
    }
    const shared = { DATABASE_URL: await privateDatabase(PG_URL, 'sy_replay'), REDIS_URL, REDIS_PREFIX: randomId('sy-replay-'), API_KEYS: API_KEY, ...HEARTBEAT };
    a = await startServer({ ...shared, NODE_ID: 'a' }, { name: 'replay-a' });
    b = await startServer({ ...shared, NODE_ID: 'b' }, { name: 'replay-b' });
  });

  it('durable events published on one node are delivered live on the other', async () => {
    const co = randomId('co-');
    const onB = await connectRecording(b.url, { token: token({ sub: 'u1', companyId: co, role: 'operator' }) });
    await publish(a, [order(co, 1), order(co, 2)]);
    await waitUntil(() => onB.received.length === 2, 5000, 'live on B');
    assert.deepEqual(onB.received.map((r) => r.meta.offset), [1, 2]);
  });

  it('exact resume with offsets and the offline queue both survive a node change', async () => {
    const co = randomId('co-');
    const auth = { token: token({ sub: 'u1', companyId: co, role: 'operator' }) };
    const onA = await connectRecording(a.url, auth);
    await publish(a, [order(co, 1), order(co, 2), order(co, 3)]);
    await waitUntil(() => onA.received.length === 3, 5000, 'live on A');
    await leaveProven(onA.socket);
    await publish(b, [order(co, 4)]);
    await publish(a, [order(co, 5)]);
    const plain = await connectRecording(b.url, auth);
    assert.deepEqual(plain.received.map((r) => r.payload.n), [4, 5], 'offline queue from the database on B');
    await leave(plain.socket);
    const exact = await connectRecording(b.url, { ...auth, offsets: { company: 2 } });
    assert.deepEqual(exact.received.map((r) => r.meta.offset), [3, 4, 5], 'exact resume on B');
  });
});
