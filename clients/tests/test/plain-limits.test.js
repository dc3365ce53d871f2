// The plain WebSocket's guarantees and limits, the same as socket.io's:
// ping/pong heartbeats (a dead peer is dropped within WS_PING_INTERVAL +
// WS_PING_TIMEOUT), the offline queue per user and device (unchanged
// clients, `ack`), the Origin rule, per-IP connection limits, rate limits,
// and slow consumers cut off with their durable events replayed later.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import {
  cleanup, getJson, it, randomId, sleep, startServer, token, waitUntil,
} from './helpers.js';
import { closeAllPlain, sseOpen, wsOpen, wsSession, wsUrl } from './plain.js';

const API_KEY = 'plain-limits-key';
const CO = randomId('plim-');
let server;

before(async () => {
  server = await startServer({
    API_KEYS: API_KEY,
    WS_PING_INTERVAL: 500,
    WS_PING_TIMEOUT: 500,
    CORS_ORIGINS: 'https://app.example.com',
    WS_MAX_CONNECTIONS_PER_IP: 8,
    WS_RATE_LIMIT: 5,
    WS_RATE_BURST: 5,
    WS_USER_RATE_LIMIT: 1000,
    HTTP_BODY_LIMIT: 8 * 1024 * 1024,
  });
});

after(async () => {
  closeAllPlain();
  await cleanup();
});

async function publish(body) {
  const res = await fetch(`${server.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const out = await res.json();
  assert.equal(res.status, 202, JSON.stringify(out));
  return out.events;
}

const note = (user, n, extra = {}) => ({
  type: 'order:note_added', companyId: CO, users: [user], payload: { orderId: String(n), note: `n${n}`, addedBy: 'x', ...extra },
});
const tok = (sub, role = 'operator') => token({ sub, companyId: CO, role });
const connected = async () => (await getJson(`${server.url}/health/websocket`)).body.connectedClients;

describe('plain WebSocket guarantees', () => {
  it('a peer that stops answering pings is dropped within WS_PING_INTERVAL + WS_PING_TIMEOUT', async () => {
    const before = await connected();
    const c = await wsOpen(wsUrl(server, '/ws', `?token=${tok('silent')}`), { autoPong: false });
    await c.next((m) => m.type === 'session');
    assert.equal(await connected(), before + 1);
    const t0 = Date.now();
    const closed = await c.whenClosed(5000);
    const took = Date.now() - t0;
    assert.ok(took < 1000 + 500 + 700, `dropped after ${took} ms`);
    assert.equal(closed.code, 1000);
    await waitUntil(async () => (await connected()) === before, 2000, 'session closed');
    const alive = await wsOpen(wsUrl(server, '/ws', `?token=${tok('answers')}`));
    await sleep(2000);
    assert.equal(alive.closed, null, 'a client that answers pings stays');
    alive.close();
  });

  it('the offline queue per user and device: an unchanged client gets what it missed, once; ack moves its cursor', async () => {
    const user = randomId('u-');
    const url = `?token=${tok(user)}&deviceId=tablet-1`;
    const { c } = await wsSession(wsUrl(server, '/ws', url));
    await publish([1, 2, 3].map((n) => note(user, n)));
    await c.next((m) => m.payload?.orderId === '3');
    // Held past the heartbeat proof window: what it got counts as read.
    await sleep(3500);
    c.close();
    await c.whenClosed();
    await sleep(200);
    await publish([4, 5].map((n) => note(user, n)));
    const { c: back, session } = await wsSession(wsUrl(server, '/ws', url));
    assert.equal(session.replayed, 2);
    await back.next((m) => m.payload?.orderId === '5');
    assert.deepEqual(back.events('order:note_added').map((m) => m.payload.orderId), ['4', '5']);
    // `ack` moves the cursor at once: after it, an immediate close loses nothing and repeats nothing.
    await publish([6].map((n) => note(user, n)));
    const six = await back.next((m) => m.payload?.orderId === '6');
    const acked = await back.request({ type: 'ack', room: `user:${user}`, offset: six.offset });
    assert.equal(acked.offset, six.offset);
    back.kill();
    await sleep(300);
    await publish([7].map((n) => note(user, n)));
    const { c: third } = await wsSession(wsUrl(server, '/ws', url));
    await third.next((m) => m.payload?.orderId === '7');
    await sleep(200);
    assert.deepEqual(third.events('order:note_added').map((m) => m.payload.orderId), ['7']);
    third.close();
  });

  it('the Origin rule: a browser from an unlisted origin is refused (403) on /ws and on SSE; the listed one passes', async () => {
    await assert.rejects(
      wsOpen(wsUrl(server, '/ws', `?token=${tok('o')}`), { headers: { origin: 'https://evil.example' } }),
      /HTTP 403/,
    );
    const ok = await wsOpen(wsUrl(server, '/ws', `?token=${tok('o')}`), { headers: { origin: 'https://app.example.com' } });
    ok.close();
    const es = await sseOpen(`${server.url}/api/v1/stream?token=${tok('o')}`, { headers: { origin: 'https://evil.example' } });
    assert.equal(es.status, 403);
  });

  it('per-IP connection limit: the connection over it is refused with a JSON error and close 4429', async () => {
    const before = await connected();
    const open = [];
    for (let i = before; i < 8; i++) open.push(await wsOpen(wsUrl(server, '/ws', `?token=${tok(`ip${i}`)}`)));
    await waitUntil(async () => (await connected()) === 8, 2000, '8 connected');
    const over = await wsOpen(wsUrl(server, '/ws', `?token=${tok('ip-over')}`));
    const closed = await over.whenClosed();
    assert.equal(closed.code, 4429);
    assert.equal(over.messages[0].error.code, 'LIMIT_EXCEEDED');
    for (const c of open) c.close();
    await waitUntil(async () => (await connected()) === before, 3000, 'released');
  });

  it('rate limits: requests over WS_RATE_LIMIT are answered RATE_LIMITED, the connection kept', async () => {
    const { c } = await wsSession(wsUrl(server, '/ws', `?token=${tok('fast')}`));
    for (let i = 0; i < 12; i++) c.send({ type: 'ping', requestId: i });
    await waitUntil(() => c.messages.filter((m) => m.requestId !== undefined).length === 12, 3000, '12 answers');
    const limited = c.messages.filter((m) => m.error?.code === 'RATE_LIMITED');
    assert.ok(limited.length >= 5, `${limited.length} refused`);
    assert.equal(limited[0].type, 'ping');
    await sleep(1200);
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    c.close();
  });

  it('a client that stops reading is cut off; its durable events are replayed when it returns', { timeout: 90000 }, async (t) => {
    const user = randomId('slow-');
    const url = wsUrl(server, '/ws', `?token=${tok(user)}&deviceId=slow-1`);
    const metric = async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return text.split('\n').filter((l) => l.startsWith('websocket_slow_consumer_disconnects_total')).reduce((s, l) => s + Number(l.split(' ').pop()), 0);
    };
    const before = await metric();
    await sleep(500); // the previous test's connection is gone
    const clientsBefore = await connected();
    const { c } = await wsSession(url);
    c.ws._socket.pause();
    const big = 'x'.repeat(16 * 1024);
    let last;
    for (let start = 0; start < 1200; start += 200) {
      const events = await publish(Array.from({ length: 200 }, (_, i) => note(user, start + i, { note: big })));
      last = events.at(-1).offsets[`user:${user}`];
    }
    // Cut off either as a slow consumer (frames waiting, or a write blocked
    // for WS_PING_TIMEOUT: counted) or, when the kernel's buffers took
    // everything sent so far, as a peer that answers no ping.
    await waitUntil(async () => (await connected()) <= clientsBefore, 30000, 'the stuck client is cut off');
    t.diagnostic(`counted as a slow consumer: ${(await metric()) > before}`);
    c.kill();
    const offsets = [];
    const back = await wsOpen(url);
    await waitUntil(() => {
      for (const m of back.messages.splice(0)) if (m.type === 'order:note_added') offsets.push(m.offset);
      return offsets.at(-1) === last;
    }, 60000, `replayed up to ${last}`);
    assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i), 'contiguous');
    back.close();
  });
});

describe('plain WebSocket connections waiting for `auth`', () => {
  let srv;
  before(async () => {
    srv = await startServer({ WS_MAX_PENDING_PER_IP: 2 }, { name: 'plain-pending' });
  });

  it('count against WS_MAX_PENDING_PER_IP (429 beyond), and are refused with 4401 after 10 s without one', { timeout: 30000 }, async () => {
    const a = await wsOpen(wsUrl(srv, '/ws'));
    const b = await wsOpen(wsUrl(srv, '/ws'));
    await assert.rejects(wsOpen(wsUrl(srv, '/ws')), /HTTP 429/);
    // One authenticates: its place is free again.
    a.send({ action: 'auth', token: tok('pending-a') });
    await a.next((m) => m.action === 'auth');
    const c = await wsOpen(wsUrl(srv, '/ws'));
    c.close();
    const t0 = Date.now();
    const closed = await b.whenClosed(15000);
    assert.equal(closed.code, 4401);
    assert.ok(Date.now() - t0 > 8000, 'after about 10 s');
    assert.equal(b.messages[0].error.code, 'UNAUTHORIZED');
    a.close();
  });
});

describe('plain transports at shutdown', () => {
  it('SIGTERM closes plain WebSockets with 1012 (reconnect elsewhere) and ends SSE streams; the process exits 0', async () => {
    const srv = await startServer({}, { name: 'plain-shutdown' });
    const { c } = await wsSession(wsUrl(srv, '/ws', `?token=${tok('bye-ws')}`));
    const es = await sseOpen(`${srv.url}/api/v1/stream?token=${tok('bye-sse')}`);
    await es.next((e) => e.event === 'session');
    const closed = c.whenClosed(10000);
    const exit = await srv.stop();
    assert.equal((await closed).code, 1012);
    assert.equal(exit.code, 0, JSON.stringify(exit));
    await waitUntil(() => es.ended, 2000, 'the SSE stream ended');
  });
});
