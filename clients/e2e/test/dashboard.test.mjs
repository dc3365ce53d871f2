// The example dashboard end to end: two browser contexts (an operator and a
// supervisor of one company) in Debian chromium against the real switchyard
// binary. Exactly-once claims are checked on the server (history API).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { launch, startWeb, watchPage } from '../lib/browser.mjs';
import { CLIENTS, allEvents, sleep, startServer, waitUntil } from '../lib/server.mjs';

const company = `floor-${Date.now().toString(36)}`;
let server, web, browser;
const users = {};

const ADMIN_KEY = 'dashboard-test-admin-key';

before(async () => {
  [server, web, browser] = await Promise.all([startServer({ ADMIN_API_KEYS: ADMIN_KEY }), startWeb(), launch()]);
  users.op = await openDashboard({ user: 'olga', role: 'operator' });
  users.sup = await openDashboard({ user: 'sam', role: 'supervisor' });
  // The alarm list subscribes to room `alarms` after `session`, and a first
  // subscribe starts at the room's head: an alarm published before it is
  // not this page's to see. So the tests start once both pages are in it.
  await waitUntil(async () => {
    const res = await fetch(`${server.url}/api/v1/admin/connections?companyId=${company}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const { connections } = await res.json();
    return connections.length === 2 && connections.every((c) => c.rooms.includes('alarms'));
  }, 8000, 'both dashboards subscribed to the alarms room');
});
after(async () => {
  await browser?.close();
  await web?.close();
  await server?.stop();
});

async function openDashboard(params) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  watchPage(page, params.user);
  await page.goto(`${web.url}/?${new URLSearchParams({ server: server.url, company, ...params })}`);
  await connected(page);
  return { context, page };
}

const connected = (page, ms = 15000) =>
  waitUntil(async () => (await page.getAttribute('[data-testid=connection]', 'data-status')) === 'connected', ms,
    async () => `not connected: ${await page.textContent('[data-testid=connection]').catch(() => '?')}\n${page.__lines.join('\n')}`);
const attr = (page, testid, name) => page.getAttribute(`[data-testid="${testid}"]`, name).catch(() => null);
const waitAttr = (page, testid, name, value, ms = 8000) =>
  waitUntil(async () => (await attr(page, testid, name)) === value, ms, async () => `${testid}.${name} is ${await attr(page, testid, name)}, want ${value}`);
const now = () => new Date().toISOString();
const order = (orderId, newStatus) => ({ type: 'order:status_changed', companyId: company, payload: { orderId, oldStatus: 'pending', newStatus, timestamp: now() } });

describe('factory-floor dashboard', () => {
  it('events published over HTTP appear in the right tiles; role filtering is visible', async () => {
    const { op, sup } = users;
    await server.publish([
      { type: 'machine:status_changed', companyId: company, payload: { machineId: 'm3', oldStatus: 'idle', newStatus: 'running' } },
      order('42', 'in_progress'),
      { type: 'andon_event', companyId: company, payload: { andonId: 'A1', lineId: 'L1', kind: 'maintenance', status: 'raised' } },
      { type: 'alarm', companyId: company, rooms: ['alarms'], payload: { alarmId: 'AL1', severity: 'critical', message: 'Pressure high on R2', timestamp: now() } },
      { type: 'quality_alert', companyId: company, payload: { alertId: 'Q1', batchId: 'B7', parameter: 'pH', measuredValue: 8.9, expectedRange: [6.5, 7.5], severity: 'critical', cofepisRequirement: true, actionRequired: 'hold batch' } },
    ]);
    // Telemetry is conflated per endpoint (250 ms windows): one reading per window.
    const t0 = Date.now();
    for (let i = 0; i < 8; i++) {
      await server.telemetry({ companyId: company, endpointId: 59, value: 20 + 5 * Math.sin(i), timestamp: new Date(t0 + i * 1000).toISOString() });
      await sleep(260);
    }
    await server.publish([order('99', 'completed')]); // the marker: after it, everything before has arrived
    for (const { page } of [op, sup]) {
      await waitAttr(page, 'order-99', 'data-status', 'completed');
      assert.equal(await attr(page, 'machine-m3', 'data-status'), 'running');
      assert.equal(await attr(page, 'machine-m4', 'data-status'), 'idle', 'only the named machine changed');
      assert.equal(await attr(page, 'order-42', 'data-status'), 'in_progress');
      assert.equal(await attr(page, 'andon-A1', 'data-status'), 'raised');
      assert.ok(await page.isVisible('[data-testid=alarm-AL1]'));
      await waitUntil(async () => Number(await page.textContent('[data-testid=telemetry-count]')) >= 1, 5000, 'telemetry reading charted');
      await waitUntil(async () => (await page.$$('[data-testid^=online-]')).length === 2, 8000, 'both users online');
    }
    assert.ok(await sup.page.isVisible('[data-testid=quality-Q1]'), 'supervisor receives quality alerts');
    assert.equal(await op.page.$('[data-testid=quality-Q1]'), null, 'operator does not');
    assert.ok(await op.page.isVisible('[data-testid=quality-hidden]'), 'and is told why');
    assert.equal(await op.page.isDisabled('[data-testid=andon-A1] button'), true, 'operators cannot acknowledge');
    assert.equal(await sup.page.isDisabled('[data-testid=andon-A1] button'), false);
  });

  it('hooks re-render only the tiles whose data changed', async () => {
    const { page } = users.sup;
    const renders0 = await page.evaluate(() => ({ ...window.__dashboard.renders }));
    const events = [];
    for (let i = 0; i < 30; i++) events.push({ type: 'machine:load', companyId: company, payload: { machineId: `m${1 + (i % 3)}`, load: 40 + i } });
    await server.publish(events);
    await waitAttr(page, 'machine-m3', 'data-load', '69');
    const renders = await page.evaluate(() => ({ ...window.__dashboard.renders }));
    for (let m = 4; m <= 12; m++) assert.equal(renders[`m${m}`], renders0[`m${m}`], `m${m} got no event and did not re-render`);
    for (let m = 1; m <= 3; m++) {
      const extra = renders[`m${m}`] - renders0[`m${m}`];
      assert.ok(extra >= 1 && extra <= 10, `m${m} re-rendered ${extra} times for its 10 events`);
    }
  });

  it('offline: an acknowledgement and a document edit wait in the outbox and are delivered exactly once', async () => {
    const { op, sup } = users;
    await server.publish({ type: 'andon_event', companyId: company, payload: { andonId: 'A2', lineId: 'L2', kind: 'material', status: 'raised' } });
    await waitAttr(sup.page, 'andon-A2', 'data-status', 'raised');
    await waitAttr(op.page, 'andon-A2', 'data-status', 'raised');
    await waitUntil(async () => (await attr(sup.page, 'shift-doc', 'data-status')) === 'ready', 5000, 'document loaded');

    await sup.context.setOffline(true);
    await waitUntil(async () => (await attr(sup.page, 'connection', 'data-status')) !== 'connected', 5000, 'supervisor page noticed it is offline');
    await sup.page.click('[data-testid=andon-A2] button');
    await sup.page.fill('[data-testid=shift-notes]', 'written offline by sam');
    await sup.page.click('[data-testid=shift-save]');
    await waitAttr(sup.page, 'connection', 'data-pending', '2');
    assert.equal(await attr(sup.page, 'andon-A2', 'data-status'), 'sending');
    assert.equal(await sup.page.inputValue('[data-testid=shift-notes]'), 'written offline by sam', 'the edit shows at once (local overlay)');
    await sleep(1500);
    assert.equal(await attr(op.page, 'andon-A2', 'data-status'), 'raised', 'nothing reached the operator while offline');

    await sup.context.setOffline(false);
    await connected(sup.page);
    await waitAttr(sup.page, 'connection', 'data-pending', '0');
    await waitAttr(op.page, 'andon-A2', 'data-status', 'acknowledged');
    await waitUntil(async () => (await op.page.inputValue('[data-testid=shift-notes]')) === 'written offline by sam', 8000, 'operator sees the edit');
    await sleep(500);

    const acks = (await allEvents(server, company, 'company')).filter((e) => e.type === 'andon_event' && e.payload.andonId === 'A2' && e.payload.status === 'acknowledged');
    assert.equal(acks.length, 1, `exactly one acknowledgement stored: ${JSON.stringify(acks)}`);
    const versions = (await server.documentHistory(company, 'shift', 'today')).versions.filter((v) => v.changes.notes === 'written offline by sam');
    assert.equal(versions.length, 1, 'exactly one document version for the edit');
  });

  it('two users edit the shared document: both converge, the loser sees the conflict', async () => {
    const { op, sup } = users;
    await op.context.setOffline(true);
    await waitUntil(async () => (await attr(op.page, 'connection', 'data-status')) !== 'connected', 5000, 'operator offline');
    await op.page.fill('[data-testid=shift-notes]', 'olga: belt 3 slipping');
    await op.page.click('[data-testid=shift-save]');
    await waitAttr(op.page, 'connection', 'data-pending', '1');
    await sleep(50); // sam's edit is later: last write wins for sam
    const samBase = Number(await attr(sup.page, 'shift-doc', 'data-version'));
    await sup.page.fill('[data-testid=shift-notes]', 'sam: belt 3 replaced, line 2 at 80%');
    await sup.page.click('[data-testid=shift-save]');
    // Right after the click the outbox has not even stored the edit (pending
    // still reads 0): wait for the server's answer, so that sam's edit is
    // written before olga's comes back online and olga is the one who loses.
    await waitAttr(sup.page, 'shift-doc', 'data-version', String(samBase + 1));
    await waitAttr(sup.page, 'connection', 'data-pending', '0');

    await op.context.setOffline(false);
    await connected(op.page);
    await op.page.waitForSelector('[data-testid=conflict]', { timeout: 8000 });
    const final = 'sam: belt 3 replaced, line 2 at 80%';
    for (const { page } of [op, sup]) {
      await waitUntil(async () => (await page.inputValue('[data-testid=shift-notes]')) === final, 8000, 'converged on the later edit');
    }
    await waitUntil(async () => (await attr(op.page, 'shift-doc', 'data-version')) === (await attr(sup.page, 'shift-doc', 'data-version')), 5000, 'same version');
    assert.match(await op.page.textContent('[data-testid=conflict]'), /olga: belt 3 slipping/);
    assert.equal(await sup.page.$('[data-testid=conflict]'), null, 'the winner sees no conflict');
    const doc = await server.document(company, 'shift', 'today');
    assert.equal(doc.document.data.notes, final);

    // The screenshot in the README: operator view with the conflict, while sam types.
    await sup.page.focus('[data-testid=shift-notes]');
    await sup.page.keyboard.type(' …');
    await op.page.waitForSelector('[data-testid=typing]:has-text("sam is typing")', { timeout: 5000 });
    const shot = process.env.UPDATE_SCREENSHOT ? path.join(CLIENTS, 'dashboard', 'screenshot.png') : path.join(CLIENTS, 'e2e', '.artifacts', 'dashboard.png');
    fs.mkdirSync(path.dirname(shot), { recursive: true });
    await op.page.screenshot({ path: shot, fullPage: true });
  });

  it('the server killed and restarted: the pages resume and show every durable event exactly once', async () => {
    const { op, sup } = users;
    const before = await server.publish([0, 1, 2, 3, 4].map((i) => order(`k${i}`, 'in_progress')));
    for (const { page } of [op, sup]) await waitAttr(page, 'order-k4', 'data-status', 'in_progress');
    await server.kill();
    for (const { page } of [op, sup]) await waitAttr(page, 'connection', 'data-status', 'reconnecting');
    await server.restart();
    const afterRestart = await server.publish([5, 6, 7, 8, 9].map((i) => order(`k${i}`, 'completed')));
    for (const { page } of [op, sup]) {
      await connected(page, 20000);
      await waitAttr(page, 'order-k9', 'data-status', 'completed', 10000);
      const durable = await page.evaluate(() => window.__dashboard.durable);
      const keys = durable.map((d) => d.split('#').slice(0, 2).join('#'));
      assert.equal(new Set(keys).size, keys.length, `no durable event shown twice: ${keys.join(' ')}`);
      for (const ev of [...before.events, ...afterRestart.events]) {
        assert.equal(durable.filter((d) => d.endsWith(`#${ev.id}`)).length, 1, `event ${ev.id} shown exactly once`);
      }
    }
  });

  it('a token that expires is refreshed without a visible disconnect', async () => {
    const t = await openDashboard({ user: 'tess', role: 'supervisor', ttl: '4' });
    try {
      await sleep(10000); // 2.5 lifetimes of the first token
      const probe = await t.page.evaluate(() => ({ statuses: window.__dashboard.statuses, fetches: window.__dashboard.tokenFetches }));
      assert.deepEqual(probe.statuses, ['connecting', 'connected'], 'never left "connected"');
      assert.ok(probe.fetches >= 3, `tokens fetched: ${probe.fetches}`);
      await server.publish(order('after-refresh', 'completed'));
      await waitAttr(t.page, 'order-after-refresh', 'data-status', 'completed');
    } finally {
      await t.context.close();
    }
  });
});
