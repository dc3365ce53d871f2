// SSE resume across a node killed with SIGKILL (docs/protocol.md, "Server-Sent
// Events": `Last-Event-ID` resumes every room exactly, no loss, no duplicate).
// Two nodes on Postgres + Redis; an SSE client on node A reads two rooms while
// a backend publishes durable events through node B the whole time (some to
// both rooms at once); node A is killed mid-stream; the client reconnects to
// node B with the last id it saw, while the publishing goes on. Every durable
// event arrives exactly once per room, offsets contiguous from 1.
// Fails (never skips) when Postgres or Redis is not reachable.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { cleanup, it, privateDatabase, randomId, requireServices, sleep, startServer, token, waitUntil } from './helpers.js';
import { closeAllPlain, sseOpen } from './plain.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = 'sse-kill-key';
const CO = randomId('ssek-');
let nodeA;
let nodeB;

before(async () => {
  await requireServices(PG_URL, REDIS_URL);
  const shared = { DATABASE_URL: await privateDatabase(PG_URL, 'sy_ssek'), REDIS_URL, REDIS_PREFIX: randomId('sy-ssek-'), API_KEYS: API_KEY };
  // One after the other: they migrate the same database.
  nodeA = await startServer({ ...shared, NODE_ID: 'ssek-a' }, { name: 'node-a' });
  nodeB = await startServer({ ...shared, NODE_ID: 'ssek-b' }, { name: 'node-b' });
});

after(async () => {
  closeAllPlain();
  await cleanup();
});

/** Publishes through `node`; resolves with `{ room: offset }` of the event. */
async function publish(node, rooms, n) {
  const res = await fetch(`${node.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      type: 'order:status_changed',
      companyId: CO,
      rooms,
      payload: { orderId: String(n), oldStatus: 'a', newStatus: `s${n}`, timestamp: new Date().toISOString() },
    }),
    signal: AbortSignal.timeout(5000),
  });
  const body = await res.json();
  assert.equal(res.status, 202, JSON.stringify(body));
  return body.events[0].offsets;
}

describe('SSE across a killed node', () => {
  it('Last-Event-ID on the other node after kill -9: every durable event once per room, offsets contiguous', { timeout: 60000 }, async () => {
    const r1 = `order:${randomId()}`;
    const r2 = `machine:${randomId()}`;
    const url = (node) => `${node.url}/api/v1/stream?token=${token({ sub: 'sse-kill', companyId: CO, role: 'supervisor' })}&rooms=${r1},${r2}`;
    const first = await sseOpen(url(nodeA));
    assert.equal(first.status, 200);
    const joined = await first.next((e) => e.event === 'subscribe');
    assert.deepEqual([...joined.data.payload.rooms].sort(), [r1, r2].sort(), JSON.stringify(joined.data));

    // The publisher: through node B all along, one room, the other, or both.
    const last = { [r1]: 0, [r2]: 0 };
    let publishing = true;
    let published = 0;
    const publisher = (async () => {
      for (let n = 0; publishing; n++) {
        const rooms = n % 5 === 4 ? [r1, r2] : [n % 2 ? r2 : r1];
        const offsets = await publish(nodeB, rooms, n);
        for (const [room, offset] of Object.entries(offsets)) last[room] = Math.max(last[room], offset);
        published++;
        await sleep(10);
      }
    })();

    const durable = (client) => client.events.filter((e) => e.event === 'order:status_changed');
    await first.next((e) => e.event === 'order:status_changed' && e.data.offset >= 20, 10000, 'twenty events on node A');
    nodeA.proc.kill('SIGKILL');
    await waitUntil(() => first.ended, 5000, 'the stream from node A ends with its node');
    const lastId = first.lastEventId;
    assert.ok(lastId, 'node A sent ids');
    const before = published;
    // Events keep being published while the client is away.
    await waitUntil(() => published >= before + 10, 5000, 'publishing while the client is away');

    const second = await sseOpen(url(nodeB), { lastEventId: lastId });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    // And while it resumes.
    await waitUntil(() => published >= before + 40, 10000, 'publishing while the client resumes');
    publishing = false;
    await publisher;
    const got = (room) => [...durable(first), ...durable(second)].filter((e) => e.data.room === room);
    await waitUntil(
      () => got(r1).some((e) => e.data.offset === last[r1]) && got(r2).some((e) => e.data.offset === last[r2]),
      10000,
      `the last events on node B (${JSON.stringify(last)})`,
    );
    await sleep(500); // a duplicate would arrive now
    for (const room of [r1, r2]) {
      const offsets = got(room).map((e) => e.data.offset);
      const want = Array.from({ length: last[room] }, (_, i) => i + 1);
      assert.deepEqual(offsets, want, `${room}: every offset once, in order (${offsets.length} received, ${last[room]} published)`);
    }
    assert.ok(durable(second).length > 0 && durable(first).length >= 20, 'both nodes delivered');
    console.log(`${published} publishes; ${durable(first).length} frames from node A before the kill, ${durable(second).length} from node B after; last offsets ${JSON.stringify(Object.values(last))}`);
    // The rooms were resumed from the id, not joined again from their head.
    assert.equal(second.events.filter((e) => e.event === 'subscribe').length, 0, JSON.stringify(second.events.filter((e) => e.event === 'subscribe')));
    second.close();
  });
});
