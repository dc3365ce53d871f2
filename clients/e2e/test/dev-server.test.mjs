// The README's way to run the dashboard: `npm run dev` (Vite, React's
// development build, so StrictMode is active) with /dev-token signed by the
// same JWT_SECRET as the server.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { launch, watchPage } from '../lib/browser.mjs';
import { CLIENTS, SECRET, freePort, startServer, waitUntil } from '../lib/server.mjs';

let server, browser, vite, port, out = '';
before(async () => {
  [server, browser, port] = await Promise.all([startServer(), launch(), freePort()]);
  vite = spawn('npm', ['run', 'dev', '--', '--port', String(port), '--strictPort', '--host', '127.0.0.1'], {
    cwd: path.join(CLIENTS, 'dashboard'), env: { ...process.env, JWT_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  vite.stdout.on('data', (c) => (out += c));
  vite.stderr.on('data', (c) => (out += c));
  await waitUntil(async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/`)).ok;
    } catch {
      return false;
    }
  }, 30000, () => `vite dev server did not start:\n${out}`);
});
after(async () => {
  if (vite) process.kill(-vite.pid, 'SIGTERM');
  await browser?.close();
  await server?.stop();
});

it('npm run dev serves a dashboard that connects with a /dev-token token and shows live events', { timeout: 60000 }, async () => {
  const company = `dev-${Date.now().toString(36)}`;
  const context = await browser.newContext();
  const page = await context.newPage();
  watchPage(page, 'dev');
  await page.goto(`http://127.0.0.1:${port}/?${new URLSearchParams({ server: server.url, company, user: 'dana', role: 'supervisor' })}`);
  await waitUntil(async () => (await page.getAttribute('[data-testid=connection]', 'data-status').catch(() => null)) === 'connected', 30000,
    () => `dev page did not connect:\n${page.__lines.join('\n')}\n${out}`);
  await server.publish({ type: 'machine:status_changed', companyId: company, payload: { machineId: 'm2', oldStatus: 'idle', newStatus: 'paused' } });
  await waitUntil(async () => (await page.getAttribute('[data-testid=machine-m2]', 'data-status')) === 'paused', 8000, 'tile updated');
  assert.equal(await page.evaluate(() => window.__dashboard.durable.length), 1, 'one delivery under StrictMode');
  await context.close();
});
