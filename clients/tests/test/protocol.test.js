// Protocol edges with the real clients (issue 10): event type names that
// socket.io clients reserve can never be published into a room (the v4
// client would drop the connection with "parse error"), and socket.io v2
// apps, which cannot emit `ping`, have the `server:ping` alias.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import {
  cleanup, connect, connectV2, emitAck, emitAckV2, expectNoEvent, it, randomId, sleep, startServer,
  token, waitFor,
} from './helpers.js';

let srv;
const API_KEY = 'protocol-test-key';

before(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-catalog-'));
  const catalog = path.join(dir, 'catalog.json');
  fs.writeFileSync(catalog, JSON.stringify({ allowUnknown: true }));
  srv = await startServer({ CATALOG_FILE: catalog, API_KEYS: API_KEY }, { name: 'allow-unknown' });
});

after(cleanup);

async function httpPublish(body) {
  const res = await fetch(`${srv.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, body: await res.json() };
}

describe('reserved event names (allowUnknown: true)', () => {
  it('are refused on both publish paths and a v4 client in the room stays connected', async (t) => {
    const companyId = randomId('c');
    const { socket: watcher } = await connect(srv.url, { auth: { token: token({ sub: 'w', companyId }) } }, { t });
    const { socket: publisher } = await connect(srv.url, { auth: { token: token({ sub: 'p', companyId, role: 'supervisor' }) } }, { t });
    let disconnected = null;
    watcher.on('disconnect', (reason) => { disconnected = reason; });
    const reserved = [
      'connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener',
      'session', 'session:expired', 'document:updated', 'user:online', 'presence:left', 'replay:truncated',
    ];
    for (const type of reserved) {
      const ack = await emitAck(publisher, 'event:publish', { type, payload: { x: 1 } });
      assert.equal(ack.ok, false, `${type} was accepted from a socket`);
      assert.equal(ack.error.code, 'VALIDATION_FAILED', type);
      const http = await httpPublish({ type, companyId, payload: { x: 1 } });
      assert.equal(http.status, 400, `${type} was accepted over HTTP: ${JSON.stringify(http.body)}`);
    }
    // A well-formed unknown type still reaches the watcher: it is alive.
    const got = waitFor(watcher, 'custom:still_alive');
    const ack = await emitAck(publisher, 'event:publish', { type: 'custom:still_alive', payload: { x: 2 } });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const [payload] = await got;
    assert.deepEqual(payload, { x: 2 });
    await sleep(200);
    assert.equal(disconnected, null, `the watcher was disconnected: ${disconnected}`);
    assert.equal(watcher.connected, true);
  });
});

describe('socket.io v2 client', () => {
  it('reaches ping through the `server:ping` alias', async (t) => {
    const { socket } = await connectV2(srv.url, { query: { token: token({ sub: 'legacy' }) } }, { t });
    const before = Date.now();
    const ack = await emitAckV2(socket, 'server:ping');
    assert.equal(ack.pong, true, JSON.stringify(ack));
    assert.ok(Math.abs(ack.serverTime - before) < 60_000, 'serverTime is ms since epoch');
    // The v4 client gets the same answer from the alias.
    const { socket: v4 } = await connect(srv.url, { auth: { token: token({ sub: 'modern' }) } }, { t });
    assert.equal((await emitAck(v4, 'server:ping')).pong, true);
    await expectNoEvent(v4, 'disconnect', 100);
  });
});
