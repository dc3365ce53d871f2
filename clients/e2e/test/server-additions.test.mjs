// What the hooks need from the server's issue-12 additions (item 3, built on
// branch i12-server): presence:joined / presence:left in entity rooms, and
// `switchyard catalog --json` feeding the type generator. These fail on a
// server without them.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { launch, startWeb, watchPage } from '../lib/browser.mjs';
import { CLIENTS, startServer, waitUntil } from '../lib/server.mjs';

let server, web, browser;
before(async () => {
  [server, web, browser] = await Promise.all([startServer(), startWeb(), launch()]);
});
after(async () => {
  await browser?.close();
  await web?.close();
  await server?.stop();
});

async function open(context, params) {
  const page = await context.newPage();
  watchPage(page, params.user);
  await page.goto(`${web.url}/fixtures/hooks.html?${new URLSearchParams({ server: server.url, ...params })}`);
  await waitUntil(() => page.evaluate(() => window.__h?.state?.status === 'connected'), 15000, 'connected');
  return page;
}

describe('server additions used by the hooks', () => {
  it('usePresence(entity room) follows presence:joined / presence:left without polling', async () => {
    const company = `pr-${Date.now().toString(36)}`;
    const ca = await browser.newContext();
    const cb = await browser.newContext();
    try {
      const a = await open(ca, { user: 'ann', company });
      const b = await open(cb, { user: 'bob', company });
      await a.evaluate(() => window.__h.mount({ id: 'p', kind: 'presence', room: 'machine:m1' }));
      await waitUntil(() => a.evaluate(() => JSON.stringify(window.__h.snap.p) === '["ann"]'), 5000, 'ann listed alone');
      await b.evaluate(() => window.__h.mount({ id: 'r', kind: 'room', room: 'machine:m1' }));
      await waitUntil(() => a.evaluate(() => JSON.stringify(window.__h.snap.p) === '["ann","bob"]'), 5000,
        async () => `bob joined (presence:joined): ann sees ${JSON.stringify(await a.evaluate(() => window.__h.snap.p))}`);
      await b.evaluate(() => window.__h.unmount('r'));
      await waitUntil(() => a.evaluate(() => JSON.stringify(window.__h.snap.p) === '["ann"]'), 8000, 'bob left (presence:left after the grace period)');
    } finally {
      await ca.close();
      await cb.close();
    }
  });

  it('the type generator reads `switchyard catalog --json` and its output matches the committed types', () => {
    const res = spawnSync(process.execPath, [path.join(CLIENTS, 'js', 'scripts', 'gen-types.mjs'), '--check'], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr + res.stdout);
    assert.doesNotMatch(res.stderr, /falling back/, 'the subcommand was used, not builtin.json');
    assert.match(res.stdout, /catalog --json/);
  });
});
