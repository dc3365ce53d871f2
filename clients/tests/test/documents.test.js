// Last-write-wins documents (SPEC §6) with the real socket.io-client, on a
// single SQLite node and on two nodes sharing Postgres and Redis (under a
// random REDIS_PREFIX). The same suite runs on both: writers and readers sit
// on different nodes when there are two. It ends with a convergence run:
// clients on every node send random concurrent updates to one document and
// must all end on the database's document, whose history replays to it.
// Postgres and Redis must be reachable: the cluster half fails, never skips.

import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import {
  cleanup, connect, emitAck, expectNoEvent, getJson, it, privateDatabase, randomId, sleep, startServer, tcpReachable,
  token, waitFor, waitUntil,
} from './helpers.js';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = 'documents-suite-key';
// Convergence sends as fast as acks come back; a rate limit is not under test here.
const COMMON_ENV = { API_KEYS: API_KEY, WS_RATE_LIMIT: 100000, WS_RATE_BURST: 100000 };

after(cleanup);

async function client(node, sub, role, companyId) {
  const { socket } = await connect(node.url, { auth: { token: token({ sub, companyId, role }) } });
  return socket;
}

const update = (socket, body) => emitAck(socket, 'document:update', body);
const get = (socket, type, id) => emitAck(socket, 'document:get', { type, id });

async function subscribe(socket, room) {
  const ack = await emitAck(socket, 'subscribe', { room });
  assert.deepEqual(ack, { ok: true, rooms: [room], denied: [] });
}

async function httpDocument(node, companyId, type, id) {
  return getJson(`${node.url}/api/v1/documents/${type}/${id}?companyId=${companyId}`, {
    headers: { authorization: `Bearer ${API_KEY}` },
  });
}

async function httpHistory(node, companyId, type, id) {
  const versions = [];
  let after = 0;
  for (;;) {
    const { status, body } = await getJson(
      `${node.url}/api/v1/documents/${type}/${id}/history?companyId=${companyId}&after=${after}&limit=1000`,
      { headers: { authorization: `Bearer ${API_KEY}` } },
    );
    assert.equal(status, 200, JSON.stringify(body));
    versions.push(...body.versions);
    if (body.next === null) return versions;
    after = body.next;
  }
}

function applyChanges(data, changes) {
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) delete data[k];
    else data[k] = v;
  }
}

/**
 * A client's copy of one document, kept from its acks (whole documents) and
 * `document:updated` events (changes of one version). Events may arrive out
 * of version order (different writers, different nodes): they wait until
 * their predecessor is applied.
 */
class Replica {
  constructor() {
    this.version = 0;
    this.data = {};
    this.pending = new Map();
  }

  fromDocument(doc) {
    if (doc.version <= this.version) return;
    this.version = doc.version;
    this.data = structuredClone(doc.data);
    this.drain();
  }

  fromUpdated(ev) {
    if (ev.version <= this.version) return;
    this.pending.set(ev.version, ev.changes);
    this.drain();
  }

  drain() {
    for (const v of this.pending.keys()) if (v <= this.version) this.pending.delete(v);
    while (this.pending.has(this.version + 1)) {
      const changes = this.pending.get(this.version + 1);
      this.pending.delete(this.version + 1);
      applyChanges(this.data, changes);
      this.version += 1;
    }
  }
}

/**
 * The suite on `nodes()` ([A, B]; A === B on a single node). Clients named
 * "on B" connect to the second node, so broadcasts cross nodes when there are two.
 */
function documentSuite(label, nodes, { clientsPerNode, updatesPerClient }) {
  describe(label, () => {
    const company = randomId('docs-co-');

    it('applied: versions 1 and 2; subscribers get document:updated, the writer does not', async () => {
      const [a, b] = nodes();
      const writer = await client(a, 'sup-1', 'supervisor', company);
      const readerB = await client(b, 'op-1', 'operator', company);
      const readerA = await client(a, 'op-2', 'operator', company);
      const id = randomId('o');
      const room = `document:order:${id}`;
      for (const s of [writer, readerA, readerB]) await subscribe(s, room);
      await sleep(150); // let the adapter propagate the joins
      const absent = await get(readerB, 'order', id);
      assert.equal(absent.ok, true, JSON.stringify(absent));
      assert.deepEqual(absent.document, { type: 'order', id, version: 0, data: {}, createdAt: null, updatedAt: null, updatedBy: null });

      const gotB = waitFor(readerB, 'document:updated');
      const gotA = waitFor(readerA, 'document:updated');
      const notSelf = expectNoEvent(writer, 'document:updated', 700);
      const ack = await update(writer, { type: 'order', id, baseVersion: 0, changes: { status: 'planned', notes: 'rush' } });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.equal(ack.status, 'applied');
      assert.equal(ack.version, 1);
      assert.deepEqual(ack.document.data, { status: 'planned', notes: 'rush' });
      assert.equal(ack.document.updatedBy, 'sup-1');
      assert.equal(ack.conflict, undefined);
      for (const [ev] of [await gotB, await gotA]) {
        assert.deepEqual(Object.keys(ev).sort(), ['changes', 'id', 'type', 'updatedAt', 'updatedBy', 'version']);
        assert.equal(ev.type, 'order');
        assert.equal(ev.id, id);
        assert.equal(ev.version, 1);
        assert.equal(ev.updatedBy, 'sup-1');
        assert.deepEqual(ev.changes, { status: 'planned', notes: 'rush' });
        assert.ok(!Number.isNaN(Date.parse(ev.updatedAt)), ev.updatedAt);
      }
      await notSelf;

      const second = waitFor(readerB, 'document:updated');
      const ack2 = await update(writer, { type: 'order', id, baseVersion: 1, changes: { priority: 'high' } });
      assert.equal(ack2.status, 'applied');
      assert.equal(ack2.version, 2);
      const [ev2] = await second;
      assert.deepEqual(ev2.changes, { priority: 'high' }, 'only what changed is sent');
      const fresh = await get(readerB, 'order', id);
      assert.equal(fresh.document.version, 2);
      assert.deepEqual(fresh.document.data, { status: 'planned', notes: 'rush', priority: 'high' });
    });

    it('merged with conflict: the stale writer gets document:conflict, field by field', async () => {
      const [a, b] = nodes();
      const alice = await client(a, 'alice', 'supervisor', company);
      const bob = await client(b, 'bob', 'supervisor', company);
      const id = randomId('o');
      await subscribe(alice, `document:order:${id}`);
      await sleep(150);
      const t = Date.now();
      const v1 = await update(alice, { type: 'order', id, baseVersion: 0, changes: { status: 'planned', priority: 'low' }, editedAt: t - 60000 });
      assert.equal(v1.version, 1, JSON.stringify(v1));
      // Both saw version 1. Alice writes first, with the later edit time.
      const v2 = await update(alice, { type: 'order', id, baseVersion: 1, changes: { status: 'running', priority: 'high' }, editedAt: t - 1000 });
      assert.equal(v2.version, 2);
      const aliceHears = waitFor(alice, 'document:updated');
      const conflictEvent = waitFor(bob, 'document:conflict');
      const ack = await update(bob, {
        type: 'order', id, baseVersion: 1, editedAt: new Date(t - 5000).toISOString(),
        changes: { status: 'paused', priority: 'high', notes: 'waiting for parts' },
      });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.equal(ack.status, 'merged');
      assert.equal(ack.version, 3);
      assert.deepEqual(ack.document.data, { status: 'running', priority: 'high', notes: 'waiting for parts' });
      const [conflict] = await conflictEvent;
      assert.deepEqual(ack.conflict, conflict, 'the ack carries the same conflict');
      assert.equal(conflict.type, 'order');
      assert.equal(conflict.id, id);
      assert.equal(conflict.strategy, 'last-write-wins');
      assert.deepEqual(conflict.conflictedFields, ['status'], 'priority agreed, notes untouched: no conflict');
      assert.deepEqual(conflict.originalValue, { status: 'running' });
      assert.deepEqual(conflict.incomingValue, { status: 'paused' });
      assert.deepEqual(conflict.resolvedValue, { status: 'running' });
      assert.equal(conflict.version, 3);
      assert.equal(conflict.resolution.status.winner, 'stored');
      assert.equal(conflict.resolution.status.storedBy, 'alice');
      assert.equal(conflict.resolution.status.storedVersion, 2);
      assert.equal(Date.parse(conflict.resolution.status.storedEditedAt), t - 1000);
      assert.equal(Date.parse(conflict.resolution.status.incomingEditedAt), t - 5000);
      const [ev] = await aliceHears;
      assert.equal(ev.version, 3);
      assert.deepEqual(ev.changes, { notes: 'waiting for parts' }, 'only the field that changed');
    });

    it('offline edit: an older editedAt loses to a newer stored edit although it arrives later', async () => {
      const [a, b] = nodes();
      const desk = await client(a, 'desk', 'supervisor', company);
      const tablet = await client(b, 'tablet', 'supervisor', company);
      const id = randomId('o');
      const now = Date.now();
      await update(desk, { type: 'order', id, baseVersion: 0, changes: { status: 'planned' }, editedAt: now - 2 * 3600e3 });
      const base = await get(tablet, 'order', id); // the tablet syncs, then goes offline
      assert.equal(base.document.version, 1);
      // While it is offline, the desk changes the status (a minute ago).
      await update(desk, { type: 'order', id, baseVersion: 1, changes: { status: 'running' }, editedAt: now - 60e3 });
      // The tablet comes back and sends the edit it made an hour ago.
      const conflictEvent = waitFor(tablet, 'document:conflict');
      const ack = await update(tablet, { type: 'order', id, baseVersion: 1, changes: { status: 'cancelled' }, editedAt: new Date(now - 3600e3).toISOString() });
      assert.equal(ack.status, 'merged');
      assert.equal(ack.version, 2, 'it lost its only field: no new version');
      assert.deepEqual(ack.document.data, { status: 'running' });
      const [conflict] = await conflictEvent;
      assert.deepEqual(conflict.conflictedFields, ['status']);
      assert.deepEqual(conflict.resolvedValue, { status: 'running' });
      assert.equal(conflict.resolution.status.winner, 'stored');
      // A client clock in the future is clamped: it cannot win ahead of time.
      const future = await update(tablet, { type: 'order', id, baseVersion: 1, changes: { status: 'done' }, editedAt: Date.now() + 3600e3 });
      assert.equal(future.status, 'merged');
      assert.deepEqual(future.conflict.resolvedValue, { status: 'done' }, 'clamped to now, still the latest');
      assert.ok(Date.parse(future.conflict.resolution.status.incomingEditedAt) <= Date.now());
    });

    it('a retried clientMutationId returns the first ack, writes and broadcasts nothing', async () => {
      const [a, b] = nodes();
      const writer = await client(a, 'sup-r', 'supervisor', company);
      const watcher = await client(b, 'op-r', 'operator', company);
      const id = randomId('o');
      await subscribe(watcher, `document:order:${id}`);
      await sleep(150);
      const body = { type: 'order', id, baseVersion: 0, changes: { status: 'new' }, clientMutationId: 'mut-1' };
      const heard = waitFor(watcher, 'document:updated');
      const first = await update(writer, body);
      assert.equal(first.version, 1, JSON.stringify(first));
      await heard;
      const quiet = expectNoEvent(watcher, 'document:updated', 800);
      const retry = await update(writer, body);
      assert.deepEqual(retry, { ...first, duplicate: true });
      await quiet;
      const { body: db } = await httpDocument(a, company, 'order', id);
      assert.equal(db.document.version, 1);
      const history = await httpHistory(b, company, 'order', id);
      assert.equal(history.length, 1);
    });

    it('a baseVersion from the future is refused with CONFLICT', async () => {
      const [a] = nodes();
      const s = await client(a, 'sup-f', 'supervisor', company);
      const id = randomId('o');
      await update(s, { type: 'order', id, baseVersion: 0, changes: { status: 'a' } });
      const ack = await update(s, { type: 'order', id, baseVersion: 7, changes: { status: 'b' } });
      assert.equal(ack.ok, false);
      assert.equal(ack.error.code, 'CONFLICT');
      assert.equal(ack.error.details.version, 1);
      assert.equal((await get(s, 'order', id)).document.data.status, 'a');
    });

    it('schema violation of the built-in order type: VALIDATION_FAILED, nothing written', async () => {
      const [a] = nodes();
      const s = await client(a, 'sup-s', 'supervisor', company);
      const id = randomId('o');
      await update(s, { type: 'order', id, baseVersion: 0, changes: { status: 'a' } });
      const ack = await update(s, { type: 'order', id, baseVersion: 1, changes: { status: 42, notes: 'ok' } });
      assert.equal(ack.ok, false);
      assert.equal(ack.error.code, 'VALIDATION_FAILED');
      assert.equal(ack.error.details.field, '/status');
      const bad = await update(s, { type: 'order', id, baseVersion: 1, changes: 'status=b' });
      assert.equal(bad.error.code, 'VALIDATION_FAILED');
      const doc = await get(s, 'order', id);
      assert.equal(doc.document.version, 1);
      assert.deepEqual(doc.document.data, { status: 'a' });
    });

    it('null deletes a field', async () => {
      const [a, b] = nodes();
      const s = await client(a, 'sup-d', 'supervisor', company);
      const watcher = await client(b, 'op-d', 'operator', company);
      const id = randomId('o');
      await subscribe(watcher, `document:order:${id}`);
      await sleep(150);
      const created = waitFor(watcher, 'document:updated');
      await update(s, { type: 'order', id, baseVersion: 0, changes: { status: 'a', notes: 'remove me' } });
      await created;
      const heard = waitFor(watcher, 'document:updated');
      const ack = await update(s, { type: 'order', id, baseVersion: 1, changes: { notes: null } });
      assert.equal(ack.version, 2);
      assert.deepEqual(ack.document.data, { status: 'a' });
      assert.deepEqual((await heard)[0].changes, { notes: null });
      const { body } = await httpDocument(b, company, 'order', id);
      assert.deepEqual(body.document.data, { status: 'a' });
    });

    it('another company neither reads nor writes it: same type and id is another document', async () => {
      const [a, b] = nodes();
      const other = randomId('docs-other-');
      const mine = await client(a, 'same-user', 'supervisor', company);
      const theirs = await client(b, 'same-user', 'supervisor', other);
      const id = randomId('o');
      await subscribe(theirs, `document:order:${id}`);
      await sleep(150);
      const quiet = expectNoEvent(theirs, 'document:updated', 800);
      await update(mine, { type: 'order', id, baseVersion: 0, changes: { status: 'secret' } });
      await quiet;
      assert.equal((await get(theirs, 'order', id)).document.version, 0);
      const ack = await update(theirs, { type: 'order', id, baseVersion: 0, changes: { status: 'theirs' } });
      assert.equal(ack.status, 'applied');
      assert.equal(ack.version, 1);
      assert.deepEqual((await get(mine, 'order', id)).document.data, { status: 'secret' });
      assert.deepEqual((await httpDocument(a, other, 'order', id)).body.document.data, { status: 'theirs' });
    });

    it('an operator may read but not write project documents (catalog: write = manager+)', async () => {
      const [a] = nodes();
      const op = await client(a, 'op-p', 'operator', company);
      const mgr = await client(a, 'mgr-p', 'manager', company);
      const sup = await client(a, 'sup-p', 'supervisor', company);
      const id = randomId('p');
      const denied = await update(op, { type: 'project', id, baseVersion: 0, changes: { name: 'Tower B' } });
      assert.equal(denied.ok, false);
      assert.equal(denied.error.code, 'FORBIDDEN');
      assert.equal((await update(sup, { type: 'project', id, baseVersion: 0, changes: { name: 'x' } })).error.code, 'FORBIDDEN');
      const ok = await update(mgr, { type: 'project', id, baseVersion: 0, changes: { name: 'Tower B' } });
      assert.equal(ok.version, 1, JSON.stringify(ok));
      const read = await get(op, 'project', id);
      assert.deepEqual(read.document.data, { name: 'Tower B' });
      // Types without a catalog entry are open to every role.
      const free = await update(op, { type: 'checklist', id, baseVersion: 0, changes: { done: true } });
      assert.equal(free.version, 1, JSON.stringify(free));
    });

    it('convergence: concurrent random updates from every node end on the same document', { timeout: 240000 }, async (t) => {
      const all = nodes();
      const distinct = [...new Set(all)];
      const id = randomId('hot');
      const type = 'board';
      const room = `document:${type}:${id}`;
      const fields = ['status', 'priority', 'station', 'qty', 'note', 'owner'];
      const sockets = [];
      for (const [n, node] of distinct.entries()) {
        for (let i = 0; i < clientsPerNode; i++) {
          const s = await client(node, `w${n}-${i}`, 'supervisor', company);
          const replica = new Replica();
          s.on('document:updated', (ev) => { if (ev.id === id) replica.fromUpdated(ev); });
          await subscribe(s, room);
          sockets.push({ s, replica, name: `w${n}-${i}` });
        }
      }
      await sleep(300);
      const stats = { updates: 0, applied: 0, merged: 0, conflicts: 0, conflictEvents: 0 };
      for (const { s } of sockets) s.on('document:conflict', () => { stats.conflictEvents += 1; });
      const started = Date.now();
      await Promise.all(sockets.map(async ({ s, replica, name }) => {
        for (let n = 0; n < updatesPerClient; n++) {
          const changes = {};
          const count = 1 + Math.floor(Math.random() * 3);
          for (let k = 0; k < count; k++) {
            const f = fields[Math.floor(Math.random() * fields.length)];
            changes[f] = Math.random() < 0.1 ? null : `${name}:${n}`;
          }
          const ack = await emitAck(s, 'document:update', {
            type, id, baseVersion: replica.version, changes,
            editedAt: Date.now() - Math.floor(Math.random() * 60000),
            clientMutationId: `${name}-${n}`,
          }, 15000);
          stats.updates += 1;
          if (!ack.ok) throw new Error(`${name} update ${n} refused: ${JSON.stringify(ack)}`);
          stats[ack.status] += 1;
          if (ack.conflict) stats.conflicts += 1;
          replica.fromDocument(ack.document);
        }
      }));
      const elapsedMs = Date.now() - started;

      const { status, body } = await httpDocument(distinct[0], company, type, id);
      assert.equal(status, 200, JSON.stringify(body));
      const final = body.document;
      // Events may still be in flight: wait until every replica caught up.
      await waitUntil(() => sockets.every(({ replica }) => replica.version === final.version), 15000, 'replicas catching up')
        .catch((err) => {
          const at = sockets.map(({ replica }) => replica.version).join(',');
          throw new Error(`${err.message}: replicas at ${at}, database at ${final.version}`);
        });
      for (const { replica, name } of sockets) {
        assert.deepEqual(replica.data, final.data, `${name}'s copy from acks and document:updated`);
        assert.equal(replica.pending.size, 0, `${name} has no unapplied events`);
      }
      for (const { s, name } of sockets) {
        const got = await get(s, type, id);
        assert.equal(got.document.version, final.version, name);
        assert.deepEqual(got.document.data, final.data, `${name}'s document:get`);
      }
      for (const node of distinct.slice(1)) {
        assert.deepEqual((await httpDocument(node, company, type, id)).body.document, final, 'every node reads the same');
      }
      const history = await httpHistory(distinct[0], company, type, id);
      assert.deepEqual(history.map((v) => v.version), Array.from({ length: final.version }, (_, i) => i + 1),
        'versions 1..N, each exactly once');
      const replayed = {};
      for (const v of history) applyChanges(replayed, v.changes);
      assert.deepEqual(replayed, final.data, 'replaying the history gives the document');
      assert.equal(stats.updates, sockets.length * updatesPerClient);
      assert.equal(stats.conflictEvents, stats.conflicts, 'one document:conflict per conflicted ack');
      assert.ok(final.version <= stats.updates, 'at most one version per update');

      const figures = `${label}: ${sockets.length} clients on ${distinct.length} node(s), ${stats.updates} updates `
        + `(${stats.applied} applied, ${stats.merged} merged, ${stats.conflicts} with conflicts, `
        + `${stats.updates - final.version} lost every field and wrote no version), `
        + `final version ${final.version}, ${elapsedMs} ms (${Math.round((stats.updates * 1000) / elapsedMs)} updates/s)`;
      t.diagnostic(figures);
    });
  });
}

// ---------------------------------------------------------------------------

let single;
let nodeA;
let nodeB;

before(async () => {
  single = await startServer({ ...COMMON_ENV }, { name: 'sqlite-node' });
  const pg = new URL(PG_URL);
  const redis = new URL(REDIS_URL);
  const missing = [];
  if (!(await tcpReachable(pg.hostname, Number(pg.port || 5432)))) missing.push(`Postgres at ${pg.hostname}:${pg.port || 5432}`);
  if (!(await tcpReachable(redis.hostname, Number(redis.port || 6379)))) missing.push(`Redis at ${redis.hostname}:${redis.port || 6379}`);
  if (missing.length) {
    throw new Error(`the documents suite needs ${missing.join(' and ')}; start them (or set SY_TEST_POSTGRES_URL / SY_TEST_REDIS_URL). This suite does not skip.`);
  }
  const shared = { ...COMMON_ENV, DATABASE_URL: await privateDatabase(PG_URL, 'sy_docs'), REDIS_URL, REDIS_PREFIX: randomId('sy-docs-') };
  // One after the other: both run migrations against the same database.
  nodeA = await startServer({ ...shared, NODE_ID: 'a' }, { name: 'pg-node-a' });
  nodeB = await startServer({ ...shared, NODE_ID: 'b' }, { name: 'pg-node-b' });
});

documentSuite('documents on one SQLite node', () => [single, single], { clientsPerNode: 6, updatesPerClient: 200 });
documentSuite('documents on two nodes (Postgres + Redis)', () => [nodeA, nodeB], { clientsPerNode: 3, updatesPerClient: 200 });
