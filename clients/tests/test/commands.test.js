// Device commands (SPEC §13, issue 15 item 1) with the real socket.io-client,
// on one SQLite node and on two nodes over Postgres + Redis: a device acks and
// completes a command while two panels watch every state; a command nobody
// answers fails with TIMEOUT exactly once; a device that reconnects gets its
// queued commands in order; clientCommandId makes send idempotent; an
// interlock refuses with INTERLOCKED and its reason; nobody forges
// `command_status` (server-only): socket.io `event:publish`, the plain
// WebSocket `publish` and `POST /api/v1/events` are each FORBIDDEN.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import {
  cleanup, connect, emitAck, expectNoEvent, getJson, it, privateDatabase, randomId, sleep, startServer, tcpReachable,
  token, waitFor, waitUntil,
} from './helpers.js';
import { closeAllPlain, wsSession, wsUrl } from './plain.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = 'commands-test-key-0123456789';

const CATALOG = {
  commands: {
    'pump:start': {
      args: { type: 'object', properties: { rpm: { type: 'number' } } },
      send: ['supervisor'],
      answer: { permission: 'device' },
      interlocks: [{
        target: 'device:p1', document: 'tank:t1', field: 'level', below: 10, reason: 'tank t1 is nearly empty',
      }],
    },
  },
};

// Temp dirs of the catalog files, removed when the file's suites end.
const tempDirs = [];
after(() => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

function catalogFile() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-commands-'));
  tempDirs.push(dir);
  const file = path.join(dir, 'catalog.json');
  fs.writeFileSync(file, JSON.stringify(CATALOG));
  return file;
}

const ENV = { API_KEYS: API_KEY, WS_PRESENCE_GRACE_MS: 200 };

async function sqliteNodes() {
  const node = await startServer({ ...ENV, CATALOG_FILE: catalogFile() }, { name: 'commands-sqlite' });
  return [node, node];
}

async function clusterNodes() {
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  assert.ok(await tcpReachable(pg.hostname, Number(pg.port || 5432)), `Postgres at ${PG_URL} is needed`);
  assert.ok(await tcpReachable(redis.hostname, Number(redis.port || 6379)), `Redis at ${REDIS_URL} is needed`);
  const shared = {
    ...ENV, CATALOG_FILE: catalogFile(), DATABASE_URL: await privateDatabase(PG_URL, 'sy_cmd'), REDIS_URL, REDIS_PREFIX: randomId('sy-cmd-'),
  };
  const a = await startServer({ ...shared, NODE_ID: 'a' }, { name: 'commands-a' });
  const b = await startServer({ ...shared, NODE_ID: 'b' }, { name: 'commands-b' });
  return [a, b];
}

/** Every command_status a socket receives, in order. */
function statuses(socket) {
  const seen = [];
  socket.on('command_status', (p) => seen.push(p));
  return seen;
}

const of = (list, id) => list.filter((s) => s.commandId === id);

/** Every `command` a socket receives, in order. */
function commands(socket) {
  const seen = [];
  socket.on('command', (payload, meta) => seen.push({ payload, meta }));
  return seen;
}

const names = (list) => list.map((s) => s.status);

async function postJson(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

function suite(label, start) {
  describe(`commands: ${label}`, () => {
    let a;
    let b;
    const company = randomId('cmd-co-');
    const user = (node, sub, role, extra = {}) =>
      connect(node.url, { auth: { token: token({ sub, companyId: company, role, ...extra }) } });
    const device = (node, sub) => user(node, sub, 'operator', { permissions: ['device'] });

    before(async () => {
      [a, b] = await start();
    });
    after(async () => {
      closeAllPlain();
      await cleanup();
    });

    it('a device acks and completes a command while two panels watch every state', async () => {
      const dev = await device(a, 'dev-1');
      const room = `device:${randomId('d')}`;
      assert.equal((await emitAck(dev.socket, 'subscribe', { room })).ok, true);
      const got = commands(dev.socket);
      const sender = await user(b, 'alice', 'supervisor');
      const watcher = await user(a, 'carol', 'supervisor');
      const senderSaw = statuses(sender.socket);
      const watcherSaw = statuses(watcher.socket);

      const ack = await emitAck(sender.socket, 'command:send', {
        target: room, name: 'pump:start', args: { rpm: 1200 },
      });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.equal(ack.status, 'queued');
      const id = ack.commandId;
      const bySender = () => of(senderSaw, id);
      const byWatcher = () => of(watcherSaw, id);
      // The second panel learns the id and replays the room from its start.
      const sub = await emitAck(watcher.socket, 'subscribe', { room: `command:${id}`, offsets: { [`command:${id}`]: 0 } });
      assert.equal(sub.ok, true);

      await waitUntil(() => got.length === 1, 5000, 'device gets the command');
      assert.equal(got[0].payload.commandId, id);
      assert.equal(got[0].payload.name, 'pump:start');
      assert.deepEqual(got[0].payload.args, { rpm: 1200 });
      assert.equal(got[0].meta.type, 'command');
      assert.equal(got[0].meta.room, room);
      // Presence shows the device in the room: the command becomes `sent`.
      await waitUntil(() => names(byWatcher()).includes('sent'), 5000, 'sent');

      const acked = await emitAck(dev.socket, 'command:ack', { commandId: id });
      assert.deepEqual(acked, { ok: true, commandId: id, status: 'acked' });
      const done = await emitAck(dev.socket, 'command:result', { commandId: id, ok: true, value: 1190 });
      assert.deepEqual(done, { ok: true, commandId: id, status: 'succeeded' });

      const all = ['queued', 'sent', 'acked', 'succeeded'];
      await waitUntil(() => bySender().length >= 4 && byWatcher().length >= 4, 5000, 'every state at both panels');
      await sleep(300);
      assert.deepEqual(names(byWatcher()), all);
      assert.deepEqual(names(bySender()), all);
      const last = byWatcher()[3];
      assert.equal(last.actualValue, 1190);
      assert.ok(last.completedAt && last.at);

      const { status, body } = await getJson(`${b.url}/api/v1/commands/${id}?companyId=${company}`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      });
      assert.equal(status, 200, JSON.stringify(body));
      assert.deepEqual(body.command.transitions.map((t) => t.status), all);
      assert.equal(body.command.actualValue, 1190);
      const list = await getJson(`${a.url}/api/v1/commands?companyId=${company}&target=${room}&from=${Date.now() - 60000}`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      });
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.commands.map((c) => c.commandId), [id]);

      // A finished command takes no more answers.
      const again = await emitAck(dev.socket, 'command:result', { commandId: id, ok: false });
      assert.equal(again.ok, false);
      assert.equal(again.error.code, 'CONFLICT');
    });

    it('nobody forges command_status: socket.io, plain WebSocket and HTTP publishes are FORBIDDEN', async () => {
      const room = `device:${randomId('f')}`;
      const sender = await user(a, 'alice', 'supervisor');
      const sent = await emitAck(sender.socket, 'command:send', { target: room, name: 'pump:start' });
      assert.equal(sent.ok, true, JSON.stringify(sent));
      const id = sent.commandId;
      const statusRoom = `command:${id}`;
      const watcher = await user(b, 'carol', 'supervisor');
      const watcherSaw = statuses(watcher.socket);
      assert.equal((await emitAck(watcher.socket, 'subscribe', { room: statusRoom, offsets: { [statusRoom]: 0 } })).ok, true);
      await waitUntil(() => of(watcherSaw, id).length === 1, 5000, 'queued replayed');

      const forged = { commandId: id, status: 'succeeded', actualValue: 1 };
      const refused = (error, how) => {
        assert.equal(error.code, 'FORBIDDEN', `${how}: ${JSON.stringify(error)}`);
        assert.match(error.message, /`command_status`/, how);
        assert.match(error.message, /server/, how);
        assert.match(error.message, /command:ack/, how);
      };
      // socket.io, even as an admin (who may publish anything else).
      for (const role of ['supervisor', 'admin']) {
        const forger = await user(a, `mallory-${role}`, role);
        const ack = await emitAck(forger.socket, 'event:publish', { type: 'command_status', room: statusRoom, payload: forged });
        assert.equal(ack.ok, false, JSON.stringify(ack));
        refused(ack.error, `socket.io ${role}`);
      }
      // The plain WebSocket, with both verb styles.
      const adminToken = token({ sub: 'mallory-ws', companyId: company, role: 'admin' });
      const { c } = await wsSession(wsUrl(b, '/ws', `?token=${adminToken}`));
      const byAction = await c.request({ action: 'publish', type: 'command_status', room: statusRoom, payload: forged });
      assert.equal(byAction.success, false, JSON.stringify(byAction));
      refused(byAction.error, 'ws action');
      const byType = await c.request({ type: 'publish', eventType: 'command_status', room: statusRoom, payload: forged });
      refused(byType.error, 'ws type');
      // The HTTP API (an API key publishes any other type).
      const http = await postJson(`${a.url}/api/v1/events`, {
        type: 'command_status', companyId: company, rooms: [statusRoom], payload: forged,
      });
      assert.equal(http.status, 403, JSON.stringify(http.body));
      refused(http.body.error, 'HTTP');

      // The panel saw none of it; the server's own statuses still flow.
      await sleep(300);
      assert.deepEqual(names(of(watcherSaw, id)), ['queued']);
      const dev = await device(a, 'dev-f');
      await emitAck(dev.socket, 'subscribe', { room });
      assert.equal((await emitAck(dev.socket, 'command:ack', { commandId: id })).status, 'acked');
      assert.equal((await emitAck(dev.socket, 'command:result', { commandId: id, ok: true, value: 7 })).status, 'succeeded');
      await waitUntil(() => of(watcherSaw, id).length >= 4, 5000, 'every real state');
      await sleep(200);
      assert.deepEqual(names(of(watcherSaw, id)), ['queued', 'sent', 'acked', 'succeeded']);
      assert.equal(of(watcherSaw, id)[3].actualValue, 7);
    });

    it('a command nobody answers fails with TIMEOUT, announced once', async () => {
      const sender = await user(a, 'alice', 'supervisor');
      const room = `device:${randomId('gone')}`;
      const saw = statuses(sender.socket);
      const ack = await emitAck(sender.socket, 'command:send', { target: room, name: 'pump:start', timeoutMs: 500 });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      await waitUntil(() => names(of(saw, ack.commandId)).includes('failed'), 5000, 'failed');
      await sleep(1000); // every node's sweep has run several times since
      const seen = of(saw, ack.commandId);
      assert.deepEqual(names(seen), ['queued', 'failed']);
      const failed = seen.filter((s) => s.status === 'failed');
      assert.equal(failed.length, 1, JSON.stringify(seen));
      assert.equal(failed[0].error.code, 'TIMEOUT');
      // A device that turns up late is refused with TIMEOUT.
      const dev = await device(b, 'dev-late');
      await emitAck(dev.socket, 'subscribe', { room });
      const late = await emitAck(dev.socket, 'command:ack', { commandId: ack.commandId });
      assert.equal(late.ok, false);
      assert.equal(late.error.code, 'TIMEOUT');
    });

    it('a device that reconnects gets its queued commands in order, not the expired one', async () => {
      const room = `device:${randomId('r')}`;
      const first = await device(a, 'dev-r');
      await emitAck(first.socket, 'subscribe', { room });
      first.socket.__close();
      await sleep(600); // past WS_PRESENCE_GRACE_MS: nobody is in the room
      const sender = await user(a, 'alice', 'supervisor');
      const saw = statuses(sender.socket);
      const expired = await emitAck(sender.socket, 'command:send', { target: room, name: 'pump:start', timeoutMs: 200 });
      const one = await emitAck(sender.socket, 'command:send', { target: room, name: 'pump:start', args: { rpm: 1 } });
      const two = await emitAck(sender.socket, 'command:send', { target: room, name: 'pump:start', args: { rpm: 2 } });
      const watched = () => of(saw, one.commandId);
      await sleep(700);
      assert.deepEqual(names(watched()), ['queued'], 'still queued: nobody was there');

      const again = await device(b, 'dev-r');
      const got = commands(again.socket);
      await emitAck(again.socket, 'subscribe', { room });
      await waitUntil(() => got.length >= 2, 5000, 'queued commands on reconnect');
      await sleep(300);
      assert.deepEqual(got.map((g) => g.payload.commandId), [one.commandId, two.commandId]);
      assert.ok(!got.some((g) => g.payload.commandId === expired.commandId));
      await waitUntil(() => names(watched()).includes('sent'), 5000, 'sent once delivered');
      const acked = await emitAck(again.socket, 'command:ack', { commandId: one.commandId });
      assert.equal(acked.status, 'acked');
    });

    it('clientCommandId makes send idempotent', async () => {
      const room = `device:${randomId('i')}`;
      const dev = await device(b, 'dev-i');
      await emitAck(dev.socket, 'subscribe', { room });
      const sender = await user(a, 'alice', 'supervisor');
      const got = commands(dev.socket);
      const body = { target: room, name: 'pump:start', clientCommandId: randomId('k') };
      const first = await emitAck(sender.socket, 'command:send', body);
      const retry = await emitAck(sender.socket, 'command:send', body);
      assert.equal(first.ok, true);
      assert.equal(retry.commandId, first.commandId);
      assert.equal(retry.duplicate, true);
      await waitUntil(() => got.length === 1, 5000, 'one delivery');
      await expectNoEvent(dev.socket, 'command', 500);
      // The HTTP API scopes its keys apart from users'.
      const http1 = await postJson(`${a.url}/api/v1/commands`, { companyId: company, ...body });
      const http2 = await postJson(`${b.url}/api/os/command`, { companyId: company, ...body });
      assert.equal(http1.status, 202, JSON.stringify(http1.body));
      assert.notEqual(http1.body.commandId, first.commandId);
      assert.equal(http2.body.commandId, http1.body.commandId);
      assert.equal(http2.body.duplicate, true);
    });

    it('an interlock refuses with INTERLOCKED and its reason; rights and names are checked', async () => {
      const sender = await user(a, 'alice', 'supervisor');
      const write = (level, baseVersion) => emitAck(sender.socket, 'document:update', {
        type: 'tank', id: 't1', baseVersion, changes: { level },
      });
      const w = await write(5, 0);
      assert.equal(w.ok, true, JSON.stringify(w));
      const refused = await emitAck(sender.socket, 'command:send', { target: 'device:p1', name: 'pump:start' });
      assert.equal(refused.ok, false);
      assert.equal(refused.error.code, 'INTERLOCKED');
      assert.match(refused.error.message, /tank t1 is nearly empty/);
      const http = await postJson(`${b.url}/api/os/command`, { companyId: company, target: 'device:p1', name: 'pump:start' });
      assert.equal(http.status, 409);
      assert.equal(http.body.error.code, 'INTERLOCKED');
      // Another pump is not interlocked; a full tank releases p1.
      assert.equal((await emitAck(sender.socket, 'command:send', { target: 'device:p2', name: 'pump:start' })).ok, true);
      await write(50, w.version);
      assert.equal((await emitAck(sender.socket, 'command:send', { target: 'device:p1', name: 'pump:start' })).ok, true);

      const operator = await user(b, 'olga', 'operator');
      const forbidden = await emitAck(operator.socket, 'command:send', { target: 'device:p2', name: 'pump:start' });
      assert.equal(forbidden.error.code, 'FORBIDDEN');
      const unknown = await emitAck(sender.socket, 'command:send', { target: 'device:p2', name: 'nope' });
      assert.equal(unknown.error.code, 'UNKNOWN_COMMAND');
      const bad = await emitAck(sender.socket, 'command:send', { target: 'device:p2', name: 'pump:start', args: { rpm: 'fast' } });
      assert.equal(bad.error.code, 'VALIDATION_FAILED');
      assert.equal(bad.error.details.field, 'args/rpm');
      // Only a client with the device permission, in the target room, answers.
      const cmd = await emitAck(sender.socket, 'command:send', { target: 'device:p2', name: 'pump:start' });
      const notDevice = await emitAck(operator.socket, 'command:ack', { commandId: cmd.commandId });
      assert.equal(notDevice.error.code, 'FORBIDDEN');
      const outside = await device(a, 'dev-x');
      const notInRoom = await emitAck(outside.socket, 'command:ack', { commandId: cmd.commandId });
      assert.equal(notInRoom.error.code, 'FORBIDDEN');
    });
  });
}

suite('one node on SQLite', sqliteNodes);
suite('two nodes over Postgres and Redis', clusterNodes);
