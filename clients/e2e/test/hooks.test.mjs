// The React hooks in a real browser (Debian chromium) under <StrictMode>,
// against the real switchyard binary. Subscription counts are read on the
// SERVER: websocket_messages_total{type="subscribe",direction="in"} and
// presence:list of the room (sockets the server has in it).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launch, startWeb, watchPage } from '../lib/browser.mjs';
import { sleep, startServer, waitUntil } from '../lib/server.mjs';

let server, web, browser;
before(async () => {
  [server, web, browser] = await Promise.all([startServer(), startWeb(), launch()]);
});
after(async () => {
  await browser?.close();
  await web?.close();
  await server?.stop();
});

let n = 0;
/** A fresh context (own IndexedDB) with the fixture page, connected. */
async function open(params = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  watchPage(page, `hooks${++n}`);
  const q = new URLSearchParams({ server: server.url, company: `co${n}-${Date.now()}`, ...params });
  await page.goto(`${web.url}/fixtures/hooks.html?${q}`);
  await waitUntil(() => page.evaluate(() => window.__h?.state?.status === 'connected'), 15000,
    async () => `page did not connect: ${JSON.stringify(await page.evaluate(() => window.__h?.state))}\n${page.__lines.join('\n')}`);
  return { context, page, company: q.get('company') };
}

const subscribesIn = () => server.metric('websocket_messages_total', { type: 'subscribe', direction: 'in' });
const unsubscribesIn = () => server.metric('websocket_messages_total', { type: 'unsubscribe', direction: 'in' });
const presenceIn = (page, room) => page.evaluate(async (r) => {
  const ack = await window.__h.client.call('presence:list', { room: r });
  // Users within their grace period after leaving are listed with no
  // connection (SPEC §7): only users with sockets in the room count here.
  return ack.ok ? ack.users.filter((u) => u.connections > 0) : ack;
}, room);

describe('hooks under StrictMode', () => {
  it('a double mount makes exactly one server subscription and one delivery per event', async () => {
    const { context, page, company } = await open();
    try {
      const subs0 = await subscribesIn();
      const unsubs0 = await unsubscribesIn();
      await page.evaluate(() => window.__h.mount({ id: 'p1', kind: 'room', room: 'machine:m1', type: 'machine:status_changed' }));
      await waitUntil(() => page.evaluate(() => window.__h.snap.p1?.status === 'joined'), 5000, 'room joined');
      await sleep(700); // longer than the deferred release (250 ms): a dropped subscription would show now
      assert.equal(await subscribesIn() - subs0, 1, 'the server received exactly one subscribe');
      assert.equal(await unsubscribesIn() - unsubs0, 0, 'and no unsubscribe');
      const users = await presenceIn(page, 'machine:m1');
      assert.deepEqual(users.map((u) => [u.userId, u.connections]), [['u1', 1]], 'the server has the socket in the room once');
      await server.publish({ type: 'machine:status_changed', companyId: company, rooms: ['machine:m1'], payload: { machineId: 'm1', oldStatus: 'idle', newStatus: 'running' } });
      await waitUntil(() => page.evaluate(() => window.__h.events.length > 0), 5000, 'event delivered');
      await sleep(300);
      const events = await page.evaluate(() => window.__h.events);
      assert.equal(events.length, 1, `one delivery, one handler call: ${JSON.stringify(events)}`);
      assert.equal(events[0].payload.newStatus, 'running');
    } finally {
      await context.close();
    }
  });

  it('100 mount/unmount cycles of every hook leave no listener, view or subscription behind', async () => {
    const { context, page } = await open();
    try {
      // One of each hook stays mounted during the cycles, so the cycling ones share its subscriptions.
      const before = await page.evaluate(() => ({ stats: window.__h.client.stats(), listeners: window.__h.listeners() }));
      for (const kind of ['room', 'event', 'doc', 'presence', 'typing']) {
        await page.evaluate((k) => window.__h.cycles(20, { id: `c-${k}`, kind: k, room: k === 'presence' ? 'machine:m9' : 'machine:m2', type: 'order:status_changed' }), kind);
      }
      await sleep(700);
      const afterCycles = await page.evaluate(() => ({ stats: window.__h.client.stats(), listeners: window.__h.listeners() }));
      assert.deepEqual(afterCycles.stats, before.stats, 'client handlers, rooms, views and socket.io listeners are back to where they were');
      assert.deepEqual(afterCycles.listeners, before.listeners, 'window/document listeners are back to where they were');
      assert.deepEqual(await presenceIn(page, 'machine:m2'), [], 'the server no longer has the socket in the room');
      assert.deepEqual(await page.evaluate(() => window.__h.client.stats().handlers), 0);
    } finally {
      await context.close();
    }
  });

  it('handlers see the latest props without re-subscribing on every render', async () => {
    const { context, page, company } = await open();
    try {
      await page.evaluate(() => window.__h.mount({ id: 'lr', kind: 'room', room: 'order:5', type: 'order:status_changed', label: 'v0' }));
      await waitUntil(() => page.evaluate(() => window.__h.snap.lr?.status === 'joined'), 5000, 'room joined');
      await sleep(400);
      const subs0 = await subscribesIn();
      const handlers0 = await page.evaluate(() => window.__h.client.stats().handlers);
      for (let i = 1; i <= 30; i++) await page.evaluate((l) => window.__h.update('lr', { label: l }), `v${i}`);
      await page.evaluate(() => window.__h.frame());
      await server.publish({ type: 'order:status_changed', companyId: company, rooms: ['order:5'], payload: { orderId: '5', oldStatus: 'a', newStatus: 'b', timestamp: new Date().toISOString() } });
      await waitUntil(() => page.evaluate(() => window.__h.events.length > 0), 5000, 'event delivered');
      const [ev] = await page.evaluate(() => window.__h.events);
      assert.equal(ev.label, 'v30', 'the handler that ran is the latest render’s');
      assert.equal(await subscribesIn() - subs0, 0, 'no subscribe traffic from re-renders');
      assert.equal(await page.evaluate(() => window.__h.client.stats().handlers), handlers0);
    } finally {
      await context.close();
    }
  });

  it('useTyping: others see typing, and it ends on window blur and on unmount', async () => {
    const a = await open({ user: 'ann' });
    const q = new URLSearchParams(new URL(a.page.url()).search);
    const b = await open({ user: 'bob', company: q.get('company') });
    try {
      for (const p of [a.page, b.page]) await p.evaluate(() => window.__h.mount({ id: 't', kind: 'typing', room: 'document:shift:today' }));
      await waitUntil(() => a.page.evaluate(() => window.__h.client.stats().liveRooms === 1), 5000, 'typing room retained');
      await sleep(500);
      await a.page.evaluate(() => window.__h.typing.t(true));
      await waitUntil(() => b.page.evaluate(() => window.__h.snap.t?.includes('ann')), 5000, 'bob sees ann typing');
      await a.page.evaluate(() => window.dispatchEvent(new Event('blur')));
      await waitUntil(() => b.page.evaluate(() => window.__h.snap.t?.length === 0), 2500, 'typing ended on blur (well before the 5 s expiry)');
      await a.page.evaluate(() => window.__h.typing.t(true));
      await waitUntil(() => b.page.evaluate(() => window.__h.snap.t?.includes('ann')), 5000, 'typing again');
      await a.page.evaluate(() => window.__h.unmount('t'));
      await waitUntil(() => b.page.evaluate(() => window.__h.snap.t?.length === 0), 2500, 'typing ended on unmount');
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });
});
