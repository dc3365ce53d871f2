// Slow consumers (SPEC §8): a client that stops reading while a fast
// publisher sends is cut off instead of growing the server's memory, this is
// counted in /metrics, healthy clients keep receiving everything, and the
// slow client's durable events are replayed when it comes back.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe } from 'node:test';
import { cleanup, connect, getJson, it, randomId, sleep, startServer, token, waitUntil } from './helpers.js';

const API_KEY = 'slow-key';
let srv;

before(async () => {
  srv = await startServer({
    API_KEYS: API_KEY,
    WS_PING_INTERVAL: 1000,
    WS_PING_TIMEOUT: 2000,
    HTTP_BODY_LIMIT: 8 * 1024 * 1024,
  }, { name: 'slow-consumer' });
});
after(cleanup);

const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8'))[1]) / 1024;

async function metric(name) {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

describe('slow consumer', () => {
  it('a client that stops reading is disconnected; RSS stays bounded; its events are replayed later', { timeout: 180000 }, async (t) => {
    const co = randomId('co-');
    const note = 'n'.repeat(16 * 1024);
    const perPhase = 3000;
    let lastOffset = 0;
    let peak = rss();
    // unref: a failing assertion must not leave a timer keeping the process alive.
    const sampler = setInterval(() => { peak = Math.max(peak, rss()); }, 100).unref();
    async function publishPhase(from) {
      for (let start = from; start < from + perPhase; start += 200) {
        const batch = Array.from({ length: 200 }, (_, i) => ({
          type: 'order:note_added', companyId: co, payload: { orderId: String(start + i), note, addedBy: 'sup' },
        }));
        const res = await fetch(`${srv.url}/api/v1/events`, {
          method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(batch),
        });
        assert.equal(res.status, 202);
        lastOffset = (await res.json()).events.at(-1).offsets.company;
      }
    }
    let healthySeen = 0;
    const healthy = await connect(srv.url, { auth: { token: token({ sub: 'healthy', companyId: co, role: 'operator' }) } }, {
      onSocket: (s) => s.on('order:note_added', () => { healthySeen++; }),
    });
    // Phase 1, healthy clients only: the publishing path's own high-water mark.
    await publishPhase(0);
    await waitUntil(() => healthySeen === perPhase, 30000, `healthy client got ${healthySeen}/${perPhase}`);
    const baseline = peak;

    // Phase 2: a client stops reading from its TCP socket while as much again is published.
    const stuckAuth = { token: token({ sub: 'stuck', companyId: co, role: 'operator' }), deviceId: 'stuck-tablet' };
    let stuckSeen = 0;
    const headAtConnect = lastOffset;
    const stuck = await connect(srv.url, { auth: stuckAuth }, {
      onSocket: (s) => s.on('order:note_added', () => { stuckSeen++; }),
    });
    stuck.socket.io.engine.transport.ws._socket.pause();
    const slowBefore = await metric('websocket_slow_consumer_disconnects_total');
    await publishPhase(perPhase);
    await waitUntil(async () => (await getJson(`${srv.url}/health/websocket`)).body.connectedClients === 1, 20000, 'the stuck client is cut off');
    await waitUntil(() => healthySeen === 2 * perPhase, 30000, `healthy client got ${healthySeen}/${2 * perPhase}`);
    clearInterval(sampler);
    const growth = peak - baseline;
    const toStuck = (perPhase * note.length) / 1024 / 1024;
    t.diagnostic(`${toStuck.toFixed(0)} MB sent towards a client that stopped reading (it read ${stuckSeen} events); server RSS high-water ${baseline.toFixed(0)} MB with healthy clients only, ${peak.toFixed(0)} MB with the stuck client (+${growth.toFixed(1)} MB); cut off and counted`);
    assert.ok(await metric('websocket_slow_consumer_disconnects_total') > slowBefore, 'counted in /metrics');
    assert.ok(growth < 16, `RSS grew ${growth.toFixed(1)} MB beyond the publishing high-water mark while ${toStuck.toFixed(0)} MB went to a stuck client`);
    healthy.socket.disconnect();
    stuck.socket.io.engine?.transport?.ws?._socket?.resume();
    stuck.socket.disconnect();

    // The slow client comes back: it gets every event it did not read.
    const offsets = [];
    const back = await connect(srv.url, { auth: stuckAuth }, {
      timeoutMs: 120000,
      onSocket: (s) => s.on('order:note_added', (p, meta) => offsets.push(meta.offset)),
    });
    assert.ok(back.session.replayed > 0);
    assert.ok(offsets[0] <= headAtConnect + stuckSeen + 1, `replay starts at ${offsets[0]}; the client joined at ${headAtConnect} and read ${stuckSeen}`);
    assert.equal(offsets.at(-1), lastOffset, 'up to the last event');
    assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i), 'contiguous');
  });
});
