// The plain transports through nginx running the checked-in
// deploy/nginx/switchyard.conf (only its listen port and upstreams
// replaced) in front of two nodes on Postgres + Redis: a plain WebSocket
// upgrades through `location = /ws`, an SSE stream through
// `location = /api/v1/stream` arrives unbuffered (event by event, with its
// heartbeat comments), and events published on either node reach both.
// nginx, Postgres and Redis must be present: this suite fails, never skips.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { cleanup, it, privateDatabase, randomId, startServer, tcpReachable, token } from './helpers.js';
import { startNginx } from './nginx.js';
import { closeAllPlain, sseOpen, wsSession, wsUrl } from './plain.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = 'plain-lb-key';
const CO = randomId('plb-');
let nodes;
let nginx;

before(async () => {
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  for (const [what, host, port] of [['Postgres', pg.hostname, pg.port || 5432], ['Redis', redis.hostname, redis.port || 6379]]) {
    if (!(await tcpReachable(host, Number(port)))) throw new Error(`${what} at ${host}:${port} is not reachable; this suite does not skip`);
  }
  const shared = { DATABASE_URL: await privateDatabase(PG_URL, 'sy_plb'), REDIS_URL, REDIS_PREFIX: randomId('sy-plb-'), API_KEYS: API_KEY };
  nodes = [
    await startServer({ ...shared, NODE_ID: 'a' }, { name: 'node-a' }),
    await startServer({ ...shared, NODE_ID: 'b' }, { name: 'node-b' }),
  ];
  nginx = await startNginx(nodes.map((n) => `127.0.0.1:${n.port}`));
});

after(async () => {
  closeAllPlain();
  await cleanup();
  if (nginx) await nginx.stop();
});

async function publish(node, body) {
  const res = await fetch(`${node.url}/api/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ companyId: CO, ...body }),
  });
  assert.equal(res.status, 202, await res.text());
}

describe('plain transports behind nginx (deploy/nginx/switchyard.conf)', () => {
  it('a plain WebSocket and an SSE stream through nginx receive what either node publishes, as it is published', async () => {
    const balancer = { url: nginx.url };
    const tok = token({ sub: 'lb-user', companyId: CO, role: 'operator' });
    const { c, session } = await wsSession(wsUrl(balancer, '/ws', `?token=${tok}`));
    assert.equal(session.userId, 'lb-user');
    const es = await sseOpen(`${nginx.url}/api/v1/stream?token=${tok}`);
    assert.equal(es.status, 200);
    await es.next((e) => e.event === 'session');
    for (const [i, node] of nodes.entries()) {
      const line = `L${i}`;
      await publish(node, { type: 'production_line_status', payload: { lineId: line, status: 'running', timestamp: new Date().toISOString() } });
      // Each event arrives on its own, not when a proxy buffer fills.
      await c.next((m) => m.type === 'production_line_status' && m.payload.lineId === line, 3000);
      await es.next((e) => e.event === 'production_line_status' && e.data.payload.lineId === line, 3000);
      await publish(node, { type: 'dashboard:refresh', payload: { timestamp: `${line}-${Date.now()}` } });
      await c.next((m) => m.type === 'dashboard:refresh' && m.payload.timestamp.startsWith(line), 3000);
      await es.next((e) => e.event === 'dashboard:refresh' && e.data.payload.timestamp.startsWith(line), 3000);
    }
    c.close();
    es.close();
  });
});
