// @switchyard/client in a real browser (IndexedDB, navigator.locks, online/
// offline events, a page paused like a sleeping laptop) against the real
// switchyard binary. Delivery claims are checked against the server's
// history (offsets) and its metrics.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launch, startWeb, watchPage } from '../lib/browser.mjs';
import { allEvents, sleep, startServer, waitUntil } from '../lib/server.mjs';

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
const co = () => `sdk${++n}-${Date.now().toString(36)}`;
async function openPage(context, params, { wait = 'connected' } = {}) {
  const page = await context.newPage();
  watchPage(page, `sdk${n}`);
  await page.goto(`${web.url}/fixtures/hooks.html?${new URLSearchParams({ server: server.url, ...params })}`);
  if (wait) {
    await waitUntil(() => page.evaluate((w) => window.__h?.state?.status === w, wait), 15000,
      async () => `status ${JSON.stringify(await page.evaluate(() => window.__h?.state))}\n${page.__lines.join('\n')}`);
  }
  return page;
}
const order = (company, orderId, rooms, extra = {}) => ({
  type: 'order:status_changed', companyId: company, ...(rooms && { rooms }),
  payload: { orderId, oldStatus: 'a', newStatus: 'b', timestamp: new Date().toISOString(), ...extra },
});
const received = (page, probe) => page.evaluate((p) => window.__h.events.filter((e) => e.probe === p), probe);

describe('@switchyard/client in chromium', () => {
  it('a refused token (INVALID_TOKEN, UNAUTHORIZED) ends in the error state: no reconnect loop', async () => {
    const context = await browser.newContext();
    try {
      const failures0 = await server.metric('websocket_auth_failures_total');
      const bad = await openPage(context, { token: 'not-a-jwt' }, { wait: 'unauthorized' });
      assert.equal(await bad.evaluate(() => window.__h.state.lastError), 'INVALID_TOKEN');
      const none = await openPage(context, { notoken: '1' }, { wait: 'unauthorized' });
      assert.equal(await none.evaluate(() => window.__h.state.lastError), 'UNAUTHORIZED');
      await sleep(3000);
      assert.equal(await server.metric('websocket_auth_failures_total') - failures0, 2, 'one attempt each, then nothing');
      assert.deepEqual(await bad.evaluate(() => window.__h.statuses), ['connecting', 'unauthorized']);
    } finally {
      await context.close();
    }
  });

  it('offline, then back: missed events are replayed once each, in order, and reported as replaying', async () => {
    const company = co();
    const context = await browser.newContext();
    try {
      const page = await openPage(context, { company });
      await page.evaluate(() => window.__h.mount({ id: 'o1', kind: 'room', room: 'order:1', type: 'order:status_changed' }));
      await page.evaluate(() => window.__h.mount({ id: 'all', kind: 'event', type: 'order:status_changed' }));
      await waitUntil(() => page.evaluate(() => window.__h.snap.o1?.status === 'joined'), 5000, 'joined');
      await server.publish(order(company, '1', ['order:1'], { n: 0 }));
      await waitUntil(async () => (await received(page, 'o1')).length === 1, 5000, 'first event');
      await context.setOffline(true);
      await waitUntil(() => page.evaluate(() => window.__h.state.status === 'reconnecting'), 5000, 'offline noticed');
      for (let i = 1; i <= 6; i++) await server.publish(order(company, '1', ['order:1'], { n: i }));
      for (let i = 0; i < 6; i++) await server.publish(order(company, `c${i}`));
      await sleep(500);
      await context.setOffline(false);
      await waitUntil(async () => (await received(page, 'all')).length === 13, 10000, async () => `13 events, got ${JSON.stringify(await received(page, 'all'))}`);
      await sleep(500);
      const got = await received(page, 'all');
      assert.equal(got.length, 13, 'no duplicate after the replay');
      for (const room of ['order:1', 'company']) {
        const mine = got.filter((e) => e.room === room).map((e) => e.offset);
        const history = (await allEvents(server, company, room)).map((e) => e.offset);
        assert.deepEqual(mine, history, `${room}: every stored offset once, in order`);
      }
      assert.ok(await page.evaluate(() => window.__h.maxReplayed) >= 6, 'the connection state counted the replayed events');
    } finally {
      await context.close();
    }
  });

  it('offsets are kept in IndexedDB: a reopened page gets exactly what it missed', async () => {
    const company = co();
    const context = await browser.newContext();
    try {
      let page = await openPage(context, { company });
      await page.evaluate(() => window.__h.mount({ id: 'r', kind: 'room', room: 'order:7', type: 'order:status_changed' }));
      await waitUntil(() => page.evaluate(() => window.__h.snap.r?.status === 'joined'), 5000, 'joined');
      await server.publish([order(company, '7', ['order:7'], { n: 1 }), order(company, '7', ['order:7'], { n: 2 })]);
      await waitUntil(async () => (await received(page, 'r')).length === 2, 5000, 'two events');
      await sleep(600); // offsets are written to IndexedDB 250 ms after an event
      await page.close();
      await server.publish([order(company, '7', ['order:7'], { n: 3 }), order(company, '7', ['order:7'], { n: 4 })]);
      page = await openPage(context, { company });
      await page.evaluate(() => window.__h.mount({ id: 'r', kind: 'room', room: 'order:7', type: 'order:status_changed' }));
      await waitUntil(async () => (await received(page, 'r')).length >= 2, 5000, 'missed events');
      await sleep(500);
      assert.deepEqual((await received(page, 'r')).map((e) => e.payload.n), [3, 4]);
    } finally {
      await context.close();
    }
  });

  it('the outbox survives closing the page while offline; the next page delivers it exactly once', async () => {
    const company = co();
    const context = await browser.newContext();
    try {
      let page = await openPage(context, { company });
      await context.setOffline(true);
      await waitUntil(() => page.evaluate(() => window.__h.state.status === 'reconnecting'), 5000, 'offline');
      await page.evaluate(() => {
        window.__h.client.publish('order:note_added', { orderId: '5', note: 'queued before closing', addedBy: 'u1' }).catch(() => {});
        window.__h.client.publish('order:note_added', { orderId: '5', note: 'second', addedBy: 'u1' }).catch(() => {});
      });
      await waitUntil(() => page.evaluate(() => window.__h.state.pending === 2), 5000, 'two entries waiting');
      // Ephemeral types are never queued: they fail at once.
      const eph = await page.evaluate(() => window.__h.client.publish('machine:load', { machineId: 'm1', load: 1 }).then(() => 'sent', (e) => e.code));
      assert.equal(eph, 'OFFLINE');
      assert.equal(await page.evaluate(() => window.__h.state.pending), 2);
      await page.close();
      await context.setOffline(false);
      page = await openPage(context, { company });
      await waitUntil(() => page.evaluate(() => window.__h.state.pending === 0), 10000, 'outbox flushed');
      await sleep(300);
      const notes = (await allEvents(server, company, 'company')).filter((e) => e.type === 'order:note_added').map((e) => e.payload.note);
      assert.deepEqual(notes, ['queued before closing', 'second'], 'each stored once, in order');
    } finally {
      await context.close();
    }
  });

  it('a refusal drops the entry and rejects the publish; the next entries still go', async () => {
    const company = co();
    const context = await browser.newContext();
    try {
      const page = await openPage(context, { company });
      const res = await page.evaluate(async () => {
        const c = window.__h.client;
        const a = c.publish('order:note_added', { orderId: '1' }).then(() => 'ok', (e) => e.code);
        const b = c.publish('order:note_added', { orderId: '1', note: 'fine', addedBy: 'u1' }).then(() => 'ok', (e) => e.code);
        return Promise.all([a, b]);
      });
      assert.deepEqual(res, ['VALIDATION_FAILED', 'ok']);
      assert.equal(await page.evaluate(() => window.__h.state.pending), 0);
    } finally {
      await context.close();
    }
  });

  it('stale token after sleep: a page paused past its token expiry recovers with a fresh token and misses nothing', async () => {
    const company = co();
    const context = await browser.newContext();
    try {
      const page = await openPage(context, { company, ttl: '3' });
      await page.evaluate(() => window.__h.mount({ id: 'all', kind: 'event', type: 'order:status_changed' }));
      await page.evaluate(() => window.__h.frame());
      const fetches0 = await page.evaluate(() => window.__h.tokenFetches());
      const cdp = await context.newCDPSession(page);
      await cdp.send('Debugger.enable');
      await cdp.send('Debugger.pause'); // no JavaScript runs: timers (the refresh) do not fire, like a sleeping laptop
      await sleep(4500); // past exp: the server sends session:expired and disconnects
      for (let i = 0; i < 3; i++) await server.publish(order(company, `z${i}`));
      await cdp.send('Debugger.resume');
      await cdp.send('Debugger.disable');
      await waitUntil(async () => (await received(page, 'all')).length === 3, 10000, async () => `3 events: ${JSON.stringify(await page.evaluate(() => window.__h.state))}`);
      assert.equal(await page.evaluate(() => window.__h.state.status), 'connected');
      assert.ok(await page.evaluate(() => window.__h.tokenFetches()) > fetches0, 'a new token was fetched');
      await sleep(500);
      assert.equal((await received(page, 'all')).length, 3, 'each once');
      assert.ok(!(await page.evaluate(() => window.__h.statuses)).includes('unauthorized'));
    } finally {
      await context.close();
    }
  });
});
