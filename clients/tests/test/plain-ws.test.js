// The plain JSON WebSocket transport (SPEC §12) on one node, spoken exactly
// as the seeds' clients speak it: the factory monitor (raw `ws`, Bearer
// header, envelopes, batches), the API-Gateway-style manufacturing app
// (`new WebSocket(url + "?token=")`, `action` requests), the floor
// dashboard (`/ws?token=`), and the control panel (`ws://host/ws`, a first
// `auth` message, `type` requests, `channel` subscriptions, flat frames).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import {
  cleanup, connect, emitAck, it, randomId, sleep, startServer, token, waitFor,
} from './helpers.js';
import { closeAllPlain, wsOpen, wsSession, wsUrl } from './plain.js';

const API_KEY = 'plain-ws-key';
const CO = randomId('pws-');
let server;
let catalogDir;

before(async () => {
  // The control panel sends a command (its `command_status` is the server's).
  catalogDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-plain-ws-'));
  const catalogFile = path.join(catalogDir, 'catalog.json');
  fs.writeFileSync(catalogFile, JSON.stringify({ commands: { 'valve:set': { send: ['operator'] } } }));
  server = await startServer({
    CATALOG_FILE: catalogFile,
    API_KEYS: API_KEY,
    WS_JSON_PATH: '/ws,/dev',
    WS_MAX_PAYLOAD: 4096,
    WS_PING_INTERVAL: 1000,
    WS_PING_TIMEOUT: 1000,
  });
});

after(async () => {
  closeAllPlain();
  await cleanup();
  fs.rmSync(catalogDir, { recursive: true, force: true });
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

const tok = (sub, role = 'supervisor', companyId = CO, extra = {}) => token({ sub, companyId, role, ...extra });

describe('plain WebSocket: connecting as each seed does', () => {
  it('API gateway app: ?token=, {action: "ping"} → {action: "pong", timestamp}; getRooms; subscribeToOrder', async () => {
    const c = await wsOpen(wsUrl(server, '/ws', `?token=${tok('gw-user')}`));
    c.send({ action: 'ping' });
    const pong = await c.next((m) => m.action === 'pong');
    assert.equal(typeof pong.timestamp, 'number');
    c.send({ action: 'getRooms' });
    const rooms = await c.next((m) => m.action === 'getRooms');
    assert.deepEqual(rooms.rooms, ['company', 'role:supervisor', 'user:gw-user']);
    assert.equal(rooms.count, 3);
    c.send({ action: 'subscribeToOrder', data: { orderId: 67890 } });
    const sub = await c.next((m) => m.action === 'subscribeToOrder');
    assert.equal(sub.success, true);
    assert.equal(sub.orderId, 67890);
    const ev = await publish(orderEvent('67890', 1));
    const got = await c.next((m) => m.type === 'order:status_changed');
    assert.equal(got.payload.newStatus, 's1');
    assert.equal(got.room, 'order:67890');
    assert.equal(got.id, ev.id);
    assert.equal(typeof got.offset, 'number');
    c.close();
  });

  it('factory monitor: Authorization: Bearer, envelope frames {type, payload, room, id, sequenceId, timestamp, source, priority}', async () => {
    const { c, session } = await wsSession(wsUrl(server), { headers: { authorization: `Bearer ${tok('fm-user', 'operator')}` } });
    assert.equal(session.userId, 'fm-user');
    assert.equal(session.companyId, CO);
    const payload = { reactorId: 'R-1', previousStatus: 'idle', newStatus: 'running' };
    await publish({ type: 'reactor_status_change', payload });
    const ev = await c.next((m) => m.type === 'reactor_status_change');
    assert.deepEqual(ev.payload, payload);
    assert.equal(ev.room, 'company');
    for (const k of ['id', 'sequenceId', 'timestamp', 'source', 'priority', 'offset']) assert.ok(ev[k] !== undefined, k);
    assert.equal(ev.priority, 'high');
    c.close();
  });

  it('floor dashboard: a stage path of WS_JSON_PATH (/dev?token=) and ?format=data', async () => {
    const { c } = await wsSession(wsUrl(server, '/dev', `?token=${tok('fd-user', 'operator')}&format=data`));
    const payload = { lineId: 'L1', status: 'running', timestamp: new Date().toISOString() };
    await publish({ type: 'production_line_status', payload });
    const ev = await c.next((m) => m.type === 'production_line_status');
    assert.deepEqual(ev.data, payload);
    assert.equal(ev.payload, undefined);
    assert.equal(typeof ev.id, 'string');
    c.close();
  });

  it('control panel: ws://host/ws, first {type: "auth", token}, channel subscriptions, flat frames, numeric ids', async () => {
    const c = await wsOpen(wsUrl(server, '/ws', '?format=flat'));
    c.send({ type: 'auth', token: tok('cp-user', 'operator') });
    const auth = await c.next((m) => m.type === 'auth');
    assert.equal(auth.success, true);
    await c.next((m) => m.type === 'session');
    c.send({ type: 'subscribe', channel: 'telemetry', endpointIds: [59, 60] });
    const s1 = await c.next((m) => m.type === 'subscribe');
    assert.deepEqual(s1.rooms, ['telemetry:59', 'telemetry:60']);
    c.send({ type: 'subscribe', channel: 'alarms' });
    c.send({ type: 'subscribe', channel: 'commands', commandIds: [7] });
    c.send({ type: 'ping' });
    await c.next((m) => m.type === 'pong');
    const ts = new Date().toISOString();
    await publish({ type: 'telemetry', room: 'telemetry:59', payload: { endpointId: 59, value: 21.5, timestamp: ts } });
    const tele = await c.next((m) => m.type === 'telemetry');
    assert.deepEqual({ endpointId: tele.endpointId, value: tele.value, timestamp: tele.timestamp }, { endpointId: 59, value: 21.5, timestamp: ts });
    await publish({ type: 'alarm', room: 'alarms', payload: { alarmId: 42, severity: 'critical', message: 'hot', timestamp: ts } });
    const alarm = await c.next((m) => m.type === 'alarm');
    assert.equal(alarm.alarmId, 42);
    assert.equal(alarm.room, 'alarms');
    // `command_status` is server-only (a publish of it is FORBIDDEN): a real
    // command sent over this socket produces it, in the sender's user room.
    const sent = await c.request({ type: 'command:send', target: 'device:v1', name: 'valve:set', args: { open: true } });
    assert.equal(sent.success, true, JSON.stringify(sent));
    const cmd = await c.next((m) => m.type === 'command_status');
    assert.equal(cmd.commandId, sent.commandId);
    assert.equal(cmd.status, 'queued');
    c.close();
  });
});

describe('plain WebSocket: refusals', () => {
  it('a bad token: a JSON error, then close 4401; a first message that is not auth: 4401', async () => {
    const c = await wsOpen(wsUrl(server, '/ws', '?token=garbage'));
    const closed = await c.whenClosed();
    assert.equal(closed.code, 4401);
    assert.equal(c.messages[0].error.code, 'INVALID_TOKEN');
    const d = await wsOpen(wsUrl(server));
    d.send({ action: 'ping' });
    assert.equal((await d.whenClosed()).code, 4401);
    assert.equal(d.messages[0].action, 'error');
    assert.equal(d.messages[0].error.code, 'UNAUTHORIZED');
    const expired = await wsOpen(wsUrl(server, '/ws', `?token=${tok('x', 'operator', CO, { exp: Math.floor(Date.now() / 1000) - 3600 })}`));
    assert.equal((await expired.whenClosed()).code, 4401);
    assert.equal(expired.messages[0].error.code, 'TOKEN_EXPIRED');
  });

  it('bad input is answered and the connection kept; a frame over the engine limit closes it', async () => {
    const { c } = await wsSession(wsUrl(server, '/ws', `?token=${tok('bad-input')}`));
    c.send('not json');
    const e1 = await c.next((m) => m.error?.code === 'VALIDATION_FAILED');
    assert.equal(e1.type, 'error');
    const unknown = await c.request({ type: 'no:such_verb' });
    assert.equal(unknown.error.code, 'UNKNOWN_EVENT');
    assert.equal(unknown.type, 'no:such_verb');
    c.send({ type: 'publish', data: { type: 'dashboard:refresh', payload: { pad: 'x'.repeat(5000) } } });
    await c.next((m) => m.error?.code === 'PAYLOAD_TOO_LARGE');
    const bad = await c.request({ action: 'subscribe', data: { rooms: 'nope' } });
    assert.equal(bad.success, false);
    assert.equal(bad.error.code, 'VALIDATION_FAILED');
    c.ws.send(Buffer.from([1, 2, 3]));
    await c.next((m) => m.error?.message?.includes('binary'));
    const pong = await c.request({ type: 'ping' });
    assert.equal(pong.type, 'pong', 'still connected');
    c.send('x'.repeat(9000));
    const closed = await c.whenClosed();
    assert.equal(closed.code, 1009);
  });
});

describe('plain WebSocket: every verb', () => {
  it('ping, rooms, subscribe/unsubscribe, publish, ack, auth:refresh, document:get|update, presence:list, user:typing, getStatus, with requestId', async () => {
    const { c } = await wsSession(wsUrl(server, '/ws', `?token=${tok('verbs', 'manager')}`));
    const { c: peer } = await wsSession(wsUrl(server, '/ws', `?token=${tok('verbs-peer', 'manager')}`));
    assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    assert.deepEqual((await c.request({ type: 'rooms' })).rooms, ['company', 'role:manager', 'user:verbs']);
    const sub = await c.request({ action: 'subscribe', data: { rooms: ['order:5', 'user:someone-else'] } });
    assert.deepEqual(sub.rooms, ['order:5']);
    assert.equal(sub.denied[0].code, 'FORBIDDEN');
    await peer.request({ type: 'subscribe', room: 'order:5' });
    const pub = await c.request({ action: 'publish', type: 'order:note_added', room: 'order:5', payload: { orderId: 5, note: 'n', addedBy: 'verbs' } });
    assert.equal(pub.success, true);
    assert.equal(typeof pub.offset, 'number');
    const got = await peer.next((m) => m.type === 'order:note_added');
    assert.equal(got.offset, pub.offset);
    const viaType = await c.request({ type: 'publish', eventType: 'dashboard:refresh', payload: { timestamp: new Date().toISOString() } });
    assert.equal(viaType.success, true, JSON.stringify(viaType));
    const ack = await peer.request({ type: 'ack', room: 'order:5', offset: got.offset });
    assert.equal(ack.offset, got.offset);
    const refresh = await c.request({ type: 'auth:refresh', token: tok('verbs', 'manager') });
    assert.equal(typeof refresh.expiresAt, 'number');
    const doc = await c.request({ type: 'document:get', data: { type: 'order', id: 'd1' } });
    assert.equal(doc.document.version, 0, JSON.stringify(doc));
    await peer.request({ type: 'subscribe', room: 'document:order:d1' });
    const upd = await c.request({ type: 'document:update', data: { type: 'order', id: 'd1', baseVersion: 0, changes: { status: 'open' } } });
    assert.equal(upd.version, 1, JSON.stringify(upd));
    const announced = await peer.next((m) => m.type === 'document:updated');
    assert.equal(announced.payload.version, 1);
    const status = await c.request({ type: 'getStatus' });
    assert.equal(status.transport, 'ws');
    assert.equal(status.userId, 'verbs');
    assert.ok(status.rooms.includes('order:5'));
    const presence = await c.request({ type: 'presence:list', room: 'order:5' });
    assert.deepEqual(presence.users.map((u) => u.userId).sort(), ['verbs', 'verbs-peer']);
    const typing = await c.request({ type: 'user:typing', room: 'order:5', isTyping: true });
    assert.equal(typing.ok, true);
    const t = await peer.next((m) => m.type === 'user:typing');
    assert.equal(t.payload.userId, 'verbs');
    const unsub = await c.request({ action: 'unsubscribe', data: { room: 'order:5' } });
    assert.deepEqual(unsub.rooms, ['order:5']);
    c.close();
    peer.close();
  });
});

describe('plain WebSocket: frames', () => {
  it('?batch=MS groups non-critical events into {type: "batch", messages}; critical ones go at once', async () => {
    const { c } = await wsSession(wsUrl(server, '/ws', `?token=${tok('batcher', 'operator')}&batch=300`));
    for (let i = 0; i < 3; i++) await publish({ type: 'production_line_status', payload: { lineId: `B${i}`, status: 'ok', timestamp: new Date().toISOString() } });
    const batch = await c.next((m) => m.type === 'batch', 3000);
    assert.deepEqual(batch.messages.map((m) => m.payload.lineId), ['B0', 'B1', 'B2']);
    assert.ok(batch.timestamp);
    const mark = c.messages.length;
    const t0 = Date.now();
    await publish({ type: 'system_alert', payload: { alertId: 'A1', message: 'fire', severity: 'critical', source: 'x' } });
    const crit = await c.next((m) => m.type === 'system_alert', 3000, 'critical', mark);
    assert.equal(crit.priority, 'critical');
    assert.ok(Date.now() - t0 < 250, 'critical not delayed');
    c.close();
  });

  it('a socket.io client and a plain-WebSocket client in the same room receive the same events', async () => {
    const { c } = await wsSession(wsUrl(server, '/ws', `?token=${tok('mix-ws', 'operator')}`));
    const { socket } = await connect(server.url, { auth: { token: tok('mix-io', 'operator') } });
    await c.request({ type: 'subscribe', room: 'machine:m9' });
    await emitAck(socket, 'subscribe', { room: 'machine:m9' });
    const seenIo = [];
    socket.on('machine:status_changed', (p, meta) => seenIo.push([p.newStatus, meta.offset]));
    for (let i = 0; i < 5; i++) {
      await publish({ type: 'machine:status_changed', room: 'machine:m9', payload: { machineId: 'm9', oldStatus: 'a', newStatus: `n${i}` } });
    }
    // Listening before publishing: the ephemeral event can reach the client
    // before the HTTP answer reaches us.
    const refreshed = waitFor(socket, 'dashboard:refresh');
    await publish({ type: 'dashboard:refresh', room: 'machine:m9', payload: { timestamp: new Date().toISOString() } });
    await refreshed;
    await c.next((m) => m.type === 'dashboard:refresh');
    await sleep(100);
    const seenWs = c.events('machine:status_changed').map((m) => [m.payload.newStatus, m.offset]);
    assert.deepEqual(seenWs, seenIo);
    assert.equal(seenWs.length, 5);
    c.close();
  });
});

describe('plain WebSocket: durable resume', () => {
  it('exact resume with ?offsets= after the connection is killed: no loss, no duplicate, contiguous offsets', async () => {
    const room = `order:${randomId()}`;
    const url = (q = '') => wsUrl(server, '/ws', `?token=${tok('resumer', 'operator')}${q}`);
    const { c } = await wsSession(url());
    await c.request({ type: 'subscribe', room });
    for (let i = 0; i < 5; i++) await publish(orderEvent(room.slice(6), i));
    await c.next((m) => m.type === 'order:status_changed' && m.payload.newStatus === 's4');
    const first = c.events('order:status_changed').map((m) => m.offset);
    c.kill();
    for (let i = 5; i < 10; i++) await publish(orderEvent(room.slice(6), i));
    const last = first[first.length - 1];
    const offsets = encodeURIComponent(JSON.stringify({ [room]: last }));
    const { c: again, session } = await wsSession(url(`&offsets=${offsets}`));
    assert.deepEqual(session.denied, []);
    await again.next((m) => m.type === 'order:status_changed' && m.payload.newStatus === 's9');
    await sleep(200);
    const second = again.events('order:status_changed').map((m) => m.offset);
    const all = [...first, ...second];
    assert.equal(all.length, 10);
    for (let i = 1; i < all.length; i++) assert.equal(all[i], all[i - 1] + 1, `contiguous: ${all}`);
    again.close();
  });

  it('subscribe with offsets replays what was missed', async () => {
    const room = `order:${randomId()}`;
    for (let i = 0; i < 3; i++) await publish(orderEvent(room.slice(6), i));
    const { c } = await wsSession(wsUrl(server, '/ws', `?token=${tok('sub-offsets', 'operator')}`));
    const sub = await c.request({ type: 'subscribe', room, offsets: { [room]: 0 } });
    assert.equal(sub.replayed, 3);
    await c.next((m) => m.type === 'order:status_changed' && m.payload.newStatus === 's2');
    assert.deepEqual(c.events('order:status_changed').map((m) => m.offset), [1, 2, 3]);
    c.close();
  });
});

describe('plain WebSocket: retention and token expiry', () => {
  let short;
  before(async () => {
    short = await startServer({ API_KEYS: API_KEY, WS_MESSAGE_QUEUE_TTL: 1, JWT_LEEWAY: 0 }, { name: 'plain-ttl' });
  });

  it('a resume from before the retained history gets replay:truncated first; an expiring token gets session:expired, then the close', async () => {
    const co = randomId('pttl-');
    const post = (body) => fetch(`${short.url}/api/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ companyId: co, ...body }),
    });
    const p1 = await post({ type: 'production_line_status', payload: { lineId: 'L1', status: 'a', timestamp: new Date().toISOString() } });
    assert.equal(p1.status, 202);
    const p2 = await post({ type: 'production_line_status', priority: 'critical', payload: { lineId: 'L2', status: 'b', timestamp: new Date().toISOString() } });
    assert.equal(p2.status, 202);
    await sleep(2200);
    const offsets = encodeURIComponent(JSON.stringify({ company: 0 }));
    const exp = Math.floor(Date.now() / 1000) + 3;
    const t = token({ sub: 'ttl-user', companyId: co, role: 'operator', exp });
    const { c } = await wsSession(wsUrl(short, '/ws', `?token=${t}&offsets=${offsets}`));
    const truncated = c.messages.find((m) => m.type === 'replay:truncated');
    assert.deepEqual(truncated.payload, { room: 'company', oldestOffset: 2 });
    const replayed = c.events('production_line_status');
    assert.deepEqual(replayed.map((m) => [m.payload.lineId, m.offset, m.priority]), [['L2', 2, 'critical']]);
    assert.ok(c.messages.indexOf(truncated) < c.messages.indexOf(replayed[0]), 'the notice comes first');
    const expired = await c.next((m) => m.type === 'session:expired', 6000);
    assert.equal(expired.payload.reason, 'TOKEN_EXPIRED');
    assert.equal((await c.whenClosed()).code, 1000);
  });
});
