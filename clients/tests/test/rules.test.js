// Telemetry rules (issue 15 item 2) with the real socket.io-client, on one
// SQLite node and on two nodes over Postgres + Redis: a deadband suppresses
// readings within ±0.5 of the last delivered one (critical never); a
// threshold with forMs and hysteresis raises exactly one alarm and clears it
// exactly once while readings arrive at both nodes; a restarted node does not
// raise an alarm that is already raised; a bad RULES_FILE fails startup naming
// the entry.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import { cleanup, connect, emitAck, it, privateDatabase, randomId, sleep, startServer, tcpReachable, token, waitUntil } from './helpers.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = 'rules-test-key-0123456789';

const RULES = {
  rules: {
    'reactor-temp': {
      stream: { type: 'telemetry', field: 'value', key: 'endpointId' },
      deadband: 0.5,
      thresholds: {
        hot: {
          above: 80,
          hysteresis: 2,
          forMs: 600,
          event: 'alarm',
          room: 'alarms',
          priority: 'critical',
          payload: { severity: 'critical', message: 'reactor too hot' },
          clear: { severity: 'info', message: 'reactor back in range' },
        },
      },
    },
  },
};

// Temp dirs of the rule files, removed when the file's suites end.
const tempDirs = [];
after(() => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

function rulesFile(rules = RULES) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-rules-'));
  tempDirs.push(dir);
  const file = path.join(dir, 'rules.json');
  fs.writeFileSync(file, JSON.stringify(rules));
  return file;
}

async function post(node, route, body) {
  const res = await fetch(`${node.url}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

function suite(label, start) {
  describe(`rules: ${label}`, () => {
    let nodes;
    const company = randomId('rules-co-');
    const reading = (node, endpointId, value) => post(node, '/api/v1/telemetry', {
      companyId: company, endpointId, value, timestamp: new Date().toISOString(),
    });
    const watch = async (node, sub, room) => {
      const { socket } = await connect(node.url, { auth: { token: token({ sub, companyId: company, role: 'supervisor' }) } });
      const seen = [];
      socket.on(room === 'alarms' ? 'alarm' : 'telemetry', (payload, meta) => seen.push({ payload, meta }));
      assert.equal((await emitAck(socket, 'subscribe', { room })).ok, true);
      return seen;
    };

    before(async () => {
      nodes = await start();
    });
    after(cleanup);

    it('deadband: readings within ±0.5 of the last delivered one are suppressed, critical ones are not', async () => {
      const [a, b] = nodes;
      const ep = Math.floor(Math.random() * 1e6);
      const seen = await watch(b, 'watcher', `telemetry:${ep}`);
      await sleep(200);
      const verdicts = [];
      // Spaced past the 250 ms conflation window, so each delivered reading shows.
      for (const v of [20.0, 20.3, 20.45, 20.6, 20.2, 19.9]) {
        const r = await reading(a, ep, v);
        assert.equal(r.status, 202, JSON.stringify(r.body));
        verdicts.push(r.body.suppressed);
        await sleep(300);
      }
      assert.deepEqual(verdicts, [0, 1, 1, 0, 1, 0]);
      // A critical reading inside the band still goes out.
      const crit = await post(a, '/api/v1/events', {
        type: 'telemetry', companyId: company, rooms: [`telemetry:${ep}`], priority: 'critical',
        payload: { endpointId: ep, value: 19.95, timestamp: new Date().toISOString() },
      });
      assert.equal(crit.status, 202);
      assert.equal(crit.body.events[0].suppressed, undefined);
      await waitUntil(() => seen.length >= 4, 5000, 'four deliveries');
      await sleep(400);
      assert.deepEqual(seen.map((s) => s.payload.value), [20.0, 20.6, 19.9, 19.95]);
    });

    it('threshold with forMs and hysteresis: one alarm raised and one cleared while readings reach every node', async () => {
      const [a, b] = nodes;
      const ep = Math.floor(Math.random() * 1e6);
      const onA = await watch(a, 'alarms-a', 'alarms');
      const onB = await watch(b, 'alarms-b', 'alarms');
      const mine = (seen) => seen.filter((s) => s.payload.streamKey === String(ep));
      let n = 0;
      const next = () => nodes[n++ % 2];
      const burst = (v, count = 6) => Promise.all(
        Array.from({ length: count }, (_, i) => reading(nodes[i % 2], ep, v)),
      );

      await reading(next(), ep, 79);
      // A spike shorter than forMs raises nothing.
      await reading(next(), ep, 81);
      await sleep(200);
      await reading(next(), ep, 79.5);
      await sleep(700);
      await reading(next(), ep, 81.5);
      await sleep(800);
      assert.deepEqual(mine(onA), [], 'no alarm: the hold restarted at 81.5 and has not been judged yet');
      // Held past 600 ms: readings arriving at both nodes at once raise one alarm.
      await burst(85);
      await waitUntil(() => mine(onA).length >= 1 && mine(onB).length >= 1, 5000, 'alarm at both watchers');
      await burst(90);
      await burst(79); // in range, but within the 2-degree hysteresis
      await sleep(700);
      assert.equal(mine(onA).length, 1, JSON.stringify(mine(onA)));
      const raised = mine(onA)[0];
      assert.equal(raised.payload.state, 'raised');
      assert.equal(raised.payload.severity, 'critical');
      assert.equal(raised.meta.priority, 'critical');
      assert.equal(raised.meta.room, 'alarms');
      assert.equal(raised.meta.source, 'rules');
      // Back past the hysteresis: one clearing event, same alarm id.
      await burst(77.5);
      await burst(76);
      await waitUntil(() => mine(onB).length >= 2, 5000, 'cleared');
      await sleep(700);
      for (const seen of [onA, onB]) {
        assert.deepEqual(mine(seen).map((s) => s.payload.state), ['raised', 'cleared']);
      }
      const cleared = mine(onB)[1];
      assert.equal(cleared.payload.alarmId, raised.payload.alarmId);
      assert.equal(cleared.payload.severity, 'info');
    });

    it('a restarted node does not raise an alarm that is already raised', async () => {
      const ep = Math.floor(Math.random() * 1e6);
      const watcherNode = nodes[1];
      await reading(nodes[0], ep, 95);
      await sleep(700);
      await reading(nodes[0], ep, 96);
      const seen = await watch(watcherNode, 'alarms-r', 'alarms');
      const mine = () => seen.filter((s) => s.payload.streamKey === String(ep));
      // The watcher may have subscribed after the alarm: wait for the state to settle.
      await sleep(500);
      const before = mine().length;
      // Restart the first node on the same database.
      const old = nodes[0];
      const env = Object.fromEntries(['DATABASE_URL', 'REDIS_URL', 'REDIS_PREFIX', 'NODE_ID', 'API_KEYS', 'RULES_FILE', 'PORT']
        .filter((k) => old.env[k] !== undefined).map((k) => [k, old.env[k]]));
      await old.stop();
      const fresh = await startServer(env, { name: `${old.name}-restarted` });
      nodes = nodes[0] === nodes[1] ? [fresh, fresh] : [fresh, nodes[1]];
      const seenAfter = nodes[0] === nodes[1] ? await watch(fresh, 'alarms-r2', 'alarms') : seen;
      const mineAfter = () => seenAfter.filter((s) => s.payload.streamKey === String(ep));
      const start = nodes[0] === nodes[1] ? 0 : before;
      for (const v of [97, 98, 99]) {
        await reading(fresh, ep, v);
        await sleep(400);
      }
      assert.equal(mineAfter().length - start, 0, `no second alarm: ${JSON.stringify(mineAfter())}`);
      await reading(fresh, ep, 70);
      await waitUntil(() => mineAfter().length - start >= 1, 5000, 'cleared after restart');
      assert.equal(mineAfter()[mineAfter().length - 1].payload.state, 'cleared');
    });
  });
}

suite('one node on SQLite', async () => {
  const node = await startServer({ API_KEYS: API_KEY, RULES_FILE: rulesFile() }, { name: 'rules-sqlite' });
  return [node, node];
});

suite('two nodes over Postgres and Redis', async () => {
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  assert.ok(await tcpReachable(pg.hostname, Number(pg.port || 5432)), `Postgres at ${PG_URL} is needed`);
  assert.ok(await tcpReachable(redis.hostname, Number(redis.port || 6379)), `Redis at ${REDIS_URL} is needed`);
  const shared = {
    API_KEYS: API_KEY, RULES_FILE: rulesFile(), DATABASE_URL: await privateDatabase(PG_URL, 'sy_rules'), REDIS_URL, REDIS_PREFIX: randomId('sy-rules-'),
  };
  const a = await startServer({ ...shared, NODE_ID: 'a' }, { name: 'rules-a' });
  const b = await startServer({ ...shared, NODE_ID: 'b' }, { name: 'rules-b' });
  return [a, b];
});

describe('rules: startup', () => {
  after(cleanup);
  it('a bad RULES_FILE fails startup naming the entry', async () => {
    const bad = rulesFile({ rules: { 'reactor-temp': { stream: { type: 'telemetry' }, thresholds: { hot: { above: 1, below: 0, event: 'alarm' } } } } });
    await assert.rejects(
      startServer({ RULES_FILE: bad }, { name: 'rules-bad' }),
      (err) => /RULES_FILE: entry `rules\.reactor-temp\.thresholds\.hot`: exactly one of `above` and `below`/.test(err.message),
    );
  });
});
