// At least once for unchanged clients, however the connection ends (issue 10,
// items 1 and 2): events that reached the client's buffers but were never read
// are sent again after a client close and after a transport close, and a user
// connected for the first time to a node that is killed (SIGKILL) gets, on its
// next connection, what was published while it was away. Duplicates are
// allowed (and counted); losses are not.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe } from 'node:test';
import { cleanup, connect, it, randomId, sleep, startServer, token, waitUntil } from './helpers.js';

const API_KEY = 'alo-key';
// Short heartbeats keep the rollback window (and the test) short.
const HEARTBEAT = { WS_PING_INTERVAL: 500, WS_PING_TIMEOUT: 500 };

after(cleanup);

async function publish(server, co, n, target = {}) {
  const res = await fetch(`${server.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'order:status_changed', companyId: co, payload: { orderId: String(n), oldStatus: 'a', newStatus: 'b', timestamp: new Date().toISOString() }, ...target }),
  });
  const body = await res.json();
  assert.equal(res.status, 202, JSON.stringify(body));
  return body.events[0];
}

/** Connects an unchanged client (no offsets) recording the orderIds it processes. */
async function unchanged(url, auth, seen) {
  return connect(url, { auth }, {
    onSocket: (s) => s.on('order:status_changed', (p) => seen.push(Number(p.orderId))),
  });
}

function verdict(seen, expected) {
  const missing = expected.filter((n) => !seen.includes(n));
  const duplicates = seen.length - new Set(seen).size;
  return { missing, duplicates };
}

describe('unchanged clients: events the client never read are sent again', () => {
  for (const [how, end] of [
    ['client close (socket.disconnect())', (socket) => socket.disconnect()],
    ['transport close (WebSocket close frame)', (socket) => socket.io.engine.transport.ws.close()],
    ['transport error (TCP socket destroyed)', (socket) => socket.io.engine.transport.ws._socket.destroy()],
  ]) {
    it(`${how} while 20 events sit unread in the client's buffers`, async (t) => {
      const srv = await startServer({ API_KEYS: API_KEY, ...HEARTBEAT }, { name: `alo-${how.split(' ')[0]}` });
      const co = randomId('co-');
      const auth = { token: token({ sub: 'u1', companyId: co, role: 'operator' }) };
      const seen = [];
      const first = await unchanged(srv.url, auth, seen);
      await publish(srv, co, 0);
      await waitUntil(() => seen.length === 1, 5000, 'live event 0');
      // The client stops reading: what follows reaches its kernel buffer only.
      first.socket.io.engine.transport.ws._socket.pause();
      for (let n = 1; n <= 20; n++) await publish(srv, co, n);
      await sleep(300);
      end(first.socket);
      first.socket.close();
      await sleep(300);
      const again = await unchanged(srv.url, auth, seen);
      await sleep(500);
      again.socket.disconnect();
      const { missing, duplicates } = verdict(seen, Array.from({ length: 21 }, (_, i) => i));
      t.diagnostic(`${how}: received ${seen.length} events, missing ${missing.length}, duplicates ${duplicates}`);
      assert.deepEqual(missing, [], `lost after a ${how}`);
      await srv.stop();
    });
  }
});

describe('a killed node (SIGKILL)', () => {
  it('a first-time user gets what was published between the kill and its reconnect', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-kill-'));
    const env = { API_KEYS: API_KEY, ...HEARTBEAT, DATABASE_URL: `sqlite://${path.join(dir, 'kill.db')}` };
    const a = await startServer(env, { name: 'alo-kill-a' });
    const co = randomId('co-');
    const auths = ['fresh1', 'fresh2', 'fresh3'].map((sub) => ({ token: token({ sub, companyId: co, role: 'operator' }) }));
    const seen = auths.map(() => []);
    const sockets = [];
    for (const [i, auth] of auths.entries()) sockets.push((await unchanged(a.url, auth, seen[i])).socket);
    for (let n = 0; n < 5; n++) await publish(a, co, n);
    await waitUntil(() => seen.every((s) => s.length === 5), 5000, 'live events before the kill');
    a.proc.kill('SIGKILL');
    for (const s of sockets) s.close();
    const b = await startServer(env, { name: 'alo-kill-b' });
    for (let n = 5; n < 15; n++) await publish(b, co, n);
    for (const [i, auth] of auths.entries()) {
      const { socket } = await unchanged(b.url, auth, seen[i]);
      await sleep(300);
      socket.disconnect();
    }
    const expected = Array.from({ length: 15 }, (_, i) => i);
    const results = seen.map((s) => verdict(s, expected));
    t.diagnostic(`after kill -9: missing per user ${JSON.stringify(results.map((r) => r.missing.length))}, duplicates per user ${JSON.stringify(results.map((r) => r.duplicates))}`);
    for (const r of results) assert.deepEqual(r.missing, [], 'lost after kill -9');
    await b.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
