// Server-Sent Events (SPEC §12) on one node, read as EventSource reads them
// (a small reader over fetch streaming: `event:`, `data:`, `id:`, `retry:`,
// `Last-Event-ID` on reconnect), and tenant isolation across socket.io,
// plain WebSocket and SSE.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import {
  cleanup, connect, emitAck, expectNoEvent, it, randomId, sleep, startServer, token,
} from './helpers.js';
import { closeAllPlain, sseOpen, wsSession, wsUrl } from './plain.js';

const API_KEY = 'plain-sse-key';
const CO = randomId('sse-');
const OTHER = randomId('sse-other-');
let server;

before(async () => {
  server = await startServer({ API_KEYS: API_KEY, SSE_PATHS: '/api/os/events' });
});

after(async () => {
  closeAllPlain();
  await cleanup();
});

async function publish({ room, ...body }, companyId = CO) {
  if (room) body.rooms = [room];
  const res = await fetch(`${server.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ companyId, ...body }),
  });
  const out = await res.json();
  assert.equal(res.status, 202, JSON.stringify(out));
  return out.events[0];
}

const orderEvent = (orderId, n) => ({
  type: 'order:status_changed',
  room: `order:${orderId}`,
  payload: { orderId, oldStatus: 'pending', newStatus: `s${n}`, timestamp: new Date().toISOString() },
});
const tok = (sub, role = 'operator', companyId = CO) => token({ sub, companyId, role });
const stream = (q, path = '/api/v1/stream') => `${server.url}${path}?${q}`;

describe('SSE', () => {
  it('EventSource with ?token= and ?rooms=: retry, session, event: = type, data: = envelope, id: = resume token; ephemeral events too', async () => {
    const order = randomId();
    const es = await sseOpen(stream(`token=${tok('sse-a')}&rooms=order:${order},alarms`));
    assert.equal(es.status, 200);
    assert.equal(es.res.headers.get('content-type'), 'text/event-stream');
    const session = await es.next((e) => e.event === 'session');
    assert.equal(session.data.payload.userId, 'sse-a');
    const sub = await es.next((e) => e.event === 'subscribe');
    assert.deepEqual(sub.data.payload.rooms, [`order:${order}`, 'alarms']);
    assert.equal(es.retry, 3000);
    const published = await publish(orderEvent(order, 1));
    const ev = await es.next((e) => e.event === 'order:status_changed');
    assert.equal(ev.data.id, published.id);
    assert.equal(ev.data.room, `order:${order}`);
    assert.equal(ev.data.payload.newStatus, 's1');
    assert.ok(ev.id.split(',').includes(`order:${order}=${published.offsets[`order:${order}`]}`), ev.id);
    assert.ok(ev.id.includes('company='), `every room is in the token: ${ev.id}`);
    await publish({ type: 'dashboard:refresh', payload: { timestamp: new Date().toISOString() } });
    const eph = await es.next((e) => e.event === 'dashboard:refresh');
    assert.equal(eph.id, undefined, 'ephemeral events carry no id');
    assert.equal(eph.data.offset, undefined);
    es.close();
  });

  it('an idle stream gets a comment heartbeat every 15 s', { timeout: 40000 }, async () => {
    // A company of its own: no presence event from the other tests resets the timer.
    const es = await sseOpen(stream(`token=${tok('sse-idle', 'operator', randomId('idle-'))}`));
    await es.next((e) => e.event === 'session');
    assert.deepEqual(es.comments, ['connected']);
    await sleep(16500);
    assert.ok(es.comments.includes('heartbeat'), JSON.stringify(es.comments));
    es.close();
  });

  it('Authorization: Bearer on an SSE_PATHS alias; refusals are HTTP errors', async () => {
    const es = await sseOpen(stream('', '/api/os/events'), { headers: { authorization: `Bearer ${tok('sse-b')}` } });
    assert.equal(es.status, 200);
    await es.next((e) => e.event === 'session');
    es.close();
    const none = await sseOpen(stream(''));
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'UNAUTHORIZED');
    const bad = await sseOpen(stream('token=garbage'));
    assert.equal(bad.status, 401);
    assert.equal(bad.body.error.code, 'INVALID_TOKEN');
    const badId = await sseOpen(stream(`token=${tok('sse-b')}`), { lastEventId: 'not a token' });
    assert.equal(badId.status, 400);
  });

  it('Last-Event-ID resumes exactly: no loss, no duplicate, contiguous offsets', async () => {
    const order = randomId();
    const url = stream(`token=${tok('sse-resume')}&rooms=order:${order}`);
    const es = await sseOpen(url);
    await es.next((e) => e.event === 'subscribe');
    for (let i = 0; i < 4; i++) await publish(orderEvent(order, i));
    await es.next((e) => e.event === 'order:status_changed' && e.data.payload.newStatus === 's3');
    const first = es.events.filter((e) => e.event === 'order:status_changed').map((e) => e.data.offset);
    const lastId = es.lastEventId;
    es.close();
    for (let i = 4; i < 8; i++) await publish(orderEvent(order, i));
    const again = await sseOpen(url, { lastEventId: lastId });
    await again.next((e) => e.event === 'order:status_changed' && e.data.payload.newStatus === 's7');
    await sleep(200);
    const second = again.events.filter((e) => e.event === 'order:status_changed').map((e) => e.data.offset);
    const all = [...first, ...second];
    assert.deepEqual(all, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(again.events.filter((e) => e.event === 'subscribe').length, 0, 'resumed rooms need no subscribe');
    const resumeId = again.lastEventId;
    again.close();
    // EventSource polyfills that cannot set the header send it in the query.
    await publish(orderEvent(order, 8));
    const viaQuery = await sseOpen(`${url}&lastEventId=${encodeURIComponent(resumeId)}`);
    const ninth = await viaQuery.next((e) => e.event === 'order:status_changed');
    assert.equal(ninth.data.offset, 9);
    viaQuery.close();
  });
});

describe('tenant isolation across socket.io, plain WebSocket and SSE', () => {
  it('a client of company A never receives company B events, whatever it sends', async () => {
    const { socket } = await connect(server.url, { auth: { token: tok('iso-io') } });
    await emitAck(socket, 'subscribe', { rooms: ['order:1', 'alarms'] });
    const { c: ws } = await wsSession(wsUrl(server, '/ws', `?token=${tok('iso-ws', 'admin')}`));
    const es = await sseOpen(stream(`token=${tok('iso-sse')}&rooms=order:1,alarms`));
    await es.next((e) => e.event === 'subscribe');
    // Whatever A's plain client sends, it stays in A.
    await ws.request({ type: 'subscribe', rooms: ['order:1', 'alarms'], companyId: OTHER });
    const refresh = await ws.request({ type: 'auth', token: tok('iso-ws', 'admin', OTHER) });
    assert.equal(refresh.error.code, 'FORBIDDEN');
    const offsetsOther = await ws.request({ type: 'subscribe', room: `${OTHER}/order:1` });
    assert.equal(offsetsOther.denied[0].code, 'INVALID_ROOM');
    // Company B publishes into the same room names, over HTTP and a plain socket.
    const { c: wsB } = await wsSession(wsUrl(server, '/ws', `?token=${tok('iso-b', 'admin', OTHER)}`));
    await wsB.request({ type: 'subscribe', rooms: ['order:1', 'alarms'] });
    const ts = new Date().toISOString();
    await publish({ type: 'alarm', room: 'alarms', payload: { alarmId: 1, severity: 'info', message: 'B', timestamp: ts } }, OTHER);
    await publish(orderEvent('1', 99), OTHER);
    await publish({ type: 'dashboard:refresh', payload: { timestamp: ts } }, OTHER);
    const pub = await wsB.request({ type: 'publish', eventType: 'alarm', room: 'alarms', payload: { alarmId: 2, severity: 'info', message: 'B', timestamp: ts } });
    assert.equal(pub.success, true, JSON.stringify(pub));
    await wsB.next((m) => m.type === 'order:status_changed');
    const silent = expectNoEvent(socket, 'alarm', 800);
    await sleep(800);
    await silent;
    for (const t of ['alarm', 'order:status_changed', 'dashboard:refresh']) {
      assert.equal(ws.events(t).length, 0, `ws got ${t}`);
      assert.equal(es.events.filter((e) => e.event === t).length, 0, `sse got ${t}`);
    }
    // …and A's own event reaches all three.
    await publish({ type: 'alarm', room: 'alarms', payload: { alarmId: 3, severity: 'info', message: 'A', timestamp: ts } });
    await ws.next((m) => m.type === 'alarm');
    await es.next((e) => e.event === 'alarm');
    es.close();
  });
});
