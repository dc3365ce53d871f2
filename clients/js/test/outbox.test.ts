import 'fake-indexeddb/auto';
import { describe, expect, it, vi } from 'vitest';
import { Outbox, Rebaser, retryDelay, verdict, type OutboxHooks } from '../src/outbox';
import { indexedDbStore, memoryStore, type OutboxEntry, type Store } from '../src/storage';
import type { Ack } from '../src/types';

type A = Ack<Record<string, unknown>>;
const ok: A = { ok: true, id: 'e' };
const err = (code: string): A => ({ ok: false, error: { code, message: code } });

function harness(store: Store, answers: (body: Record<string, unknown>, n: number) => A, scope = 'acme/u1/d1') {
  const sent: Array<Record<string, unknown>> = [];
  const settled: Array<[string, string]> = [];
  let online = true;
  const hooks: OutboxHooks = {
    send: async (_event, body) => {
      sent.push(body);
      return answers(body, sent.length);
    },
    canSend: () => online,
    settled: (e, _ack, v) => settled.push([e.body.n as string, v]),
    counted: () => {},
  };
  const box = new Outbox(store, scope, hooks);
  const add = (n: string, extra: Record<string, unknown> = {}) => box.add(box.entry('event:publish', { n, clientEventId: `id-${n}`, ...extra }));
  return { box, sent, settled, add, setOnline: (v: boolean) => (online = v) };
}

describe('outbox rules', () => {
  it('retries UNAVAILABLE, RATE_LIMITED, timeouts and lost connections; drops every other refusal', () => {
    for (const c of ['UNAVAILABLE', 'RATE_LIMITED', 'TIMEOUT', 'OFFLINE']) expect(verdict(err(c))).toBe('retry');
    for (const c of ['VALIDATION_FAILED', 'FORBIDDEN', 'UNKNOWN_EVENT', 'PAYLOAD_TOO_LARGE', 'CONFLICT']) expect(verdict(err(c))).toBe('drop');
    expect(verdict(ok)).toBe('done');
    expect([1, 2, 3, 7, 20].map(retryDelay)).toEqual([500, 1000, 2000, 30000, 30000]);
  });

  it('entries made while offline are kept, then sent once each, in creation order', async () => {
    const h = harness(memoryStore(), () => ok);
    h.setOnline(false);
    for (const n of ['a', 'b', 'c']) await h.add(n);
    expect(h.sent).toEqual([]);
    expect(await h.box.entries()).toHaveLength(3);
    h.setOnline(true);
    await h.box.flush();
    expect(h.sent.map((b) => b.n)).toEqual(['a', 'b', 'c']);
    expect(h.settled).toEqual([['a', 'done'], ['b', 'done'], ['c', 'done']]);
    expect(await h.box.entries()).toEqual([]);
  });

  it('a retryable refusal stops the flush (order kept) and the retry sends the same idempotency key', async () => {
    vi.useFakeTimers();
    try {
      const h = harness(memoryStore(), (b, n) => (b.n === 'b' && n < 4 ? err(n === 2 ? 'UNAVAILABLE' : 'TIMEOUT') : ok));
      h.setOnline(false);
      for (const n of ['a', 'b', 'c']) await h.add(n);
      h.setOnline(true);
      await h.box.flush();
      expect(h.sent.map((b) => b.n)).toEqual(['a', 'b']);
      expect((await h.box.entries()).map((e) => [e.body.n, e.attempts])).toEqual([['b', 1], ['c', 0]]);
      await vi.advanceTimersByTimeAsync(retryDelay(1));
      await vi.advanceTimersByTimeAsync(retryDelay(2));
      expect(h.sent.map((b) => b.n)).toEqual(['a', 'b', 'b', 'b', 'c']);
      expect(new Set(h.sent.filter((b) => b.n === 'b').map((b) => b.clientEventId))).toEqual(new Set(['id-b']));
      expect(h.settled.map(([n]) => n)).toEqual(['a', 'b', 'c']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a final refusal drops the entry, reports it, and the next ones still go', async () => {
    const h = harness(memoryStore(), (b) => (b.n === 'bad' ? err('VALIDATION_FAILED') : ok));
    h.setOnline(false);
    for (const n of ['a', 'bad', 'c']) await h.add(n);
    h.setOnline(true);
    await h.box.flush();
    expect(h.settled).toEqual([['a', 'done'], ['bad', 'drop'], ['c', 'done']]);
    expect(await h.box.entries()).toEqual([]);
  });

  it('survives a reload: IndexedDB keeps the entries; a new outbox sends them; scopes do not mix', async () => {
    const store = await indexedDbStore(`t-${Math.random()}`);
    const first = harness(store, () => ok);
    first.setOnline(false);
    await first.add('x');
    await first.add('y');
    const other = harness(store, () => ok, 'acme/u2/d1');
    other.setOnline(false);
    await other.add('not-mine');
    // "Reload": a new Outbox over the same database.
    const second = harness(store, () => ok);
    await second.box.flush();
    expect(second.sent.map((b) => b.n)).toEqual(['x', 'y']);
    expect((await other.box.entries()).map((e: OutboxEntry) => e.body.n)).toEqual(['not-mine']);
  });
});

describe('rebasing queued document updates', () => {
  it('a later queued update is sent on the version the earlier one produced, so own edits never conflict', () => {
    const r = new Rebaser();
    const e1 = { type: 'shift', id: 's1', baseVersion: 5, changes: { a: 1 } };
    const e2 = { type: 'shift', id: 's1', baseVersion: 5, changes: { b: 1 } };
    expect(r.base(e1)).toBe(5);
    r.record(e1, 5, { ok: true, status: 'applied', version: 6 });
    expect(r.base(e2)).toBe(6);
    r.record(e2, 6, { ok: true, status: 'applied', version: 7 });
    expect(r.base({ ...e2, changes: { c: 1 } })).toBe(7);
    // Another document is not affected.
    expect(r.base({ ...e2, id: 's2' })).toBe(5);
  });

  it('after a merge (someone else wrote in between) the next update keeps its own base: last-write-wins decides', () => {
    const r = new Rebaser();
    const e1 = { type: 'shift', id: 's1', baseVersion: 5, changes: { a: 1 } };
    r.record(e1, 5, { ok: true, status: 'merged', version: 8 });
    expect(r.base({ ...e1, changes: { b: 2 } })).toBe(5);
  });
});
