// The official socket.io Admin UI (@socket.io/admin-ui's ui/dist bundle,
// unchanged, served by a static server here) against a two-node Switchyard
// cluster on Postgres + Redis with ADMIN_UI=on: the UI logs in with the
// operator's credentials on node A, lists both nodes with their connection
// counts and every socket of both nodes. Saves docs/admin-ui.png.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { io } from 'socket.io-client';
import { launch, watchPage } from '../lib/browser.mjs';
import { CLIENTS, REPO, SECRET, freePort, startServer, waitUntil } from '../lib/server.mjs';
import crypto from 'node:crypto';

const PG_URL = process.env.SY_TEST_POSTGRES_URL || process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.SY_TEST_REDIS_URL || process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const UI_DIST = path.join(CLIENTS, 'node_modules', '@socket.io', 'admin-ui', 'ui', 'dist');
const PASSWORD = 'admin-ui-browser-0123456789';
const rand = () => crypto.randomBytes(4).toString('hex');

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
function token(sub, companyId, role = 'operator') {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub, companyId, role, iat: now, exp: now + 3600 })}`;
  return `${input}.${crypto.createHmac('sha256', SECRET).update(input).digest('base64url')}`;
}

let nodes = [];
let web;
let browser;
const sockets = [];

function serveStatic(root) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml' };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = path.join(root, decodeURIComponent(url.pathname));
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(root, 'index.html');
    res.setHeader('content-type', types[path.extname(file)] ?? 'application/octet-stream');
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve) => {
    freePort().then((port) => server.listen(port, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${port}`, close: () => server.close() })));
  });
}

before(async () => {
  assert.ok(fs.existsSync(path.join(UI_DIST, 'index.html')), `${UI_DIST} missing: npm ci in clients/`);
  const shared = {
    DATABASE_URL: PG_URL, REDIS_URL, REDIS_PREFIX: `sy-ui-${rand()}`,
    ADMIN_UI: 'on', ADMIN_UI_USERNAME: 'ops', ADMIN_UI_PASSWORD: PASSWORD,
  };
  nodes.push(await startServer({ ...shared, NODE_ID: 'switchyard-a' }));
  nodes.push(await startServer({ ...shared, NODE_ID: 'switchyard-b' }));
  // Two connections on A, three on B, in two companies.
  const co = `factory-${rand()}`;
  const plan = [[0, 'ana'], [0, 'ben'], [1, 'carla'], [1, 'dev'], [1, 'eli']];
  for (const [i, user] of plan) {
    const s = io(nodes[i].url, { transports: ['websocket'], forceNew: true, reconnection: false, auth: { token: token(user, user === 'eli' ? `${co}-2` : co) } });
    await new Promise((resolve, reject) => { s.once('session', resolve); s.once('connect_error', reject); });
    sockets.push(s);
  }
  web = await serveStatic(UI_DIST);
  browser = await launch();
});

after(async () => {
  for (const s of sockets) s.close();
  await browser?.close();
  web?.close();
  for (const n of nodes) await n.stop();
});

test('the Admin UI shows both nodes, their connection counts and every socket', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const lines = watchPage(page, 'admin-ui');
  // The bundle links web fonts and icons from CDNs; no internet here.
  await page.route(/fonts\.googleapis\.com|cdn\.jsdelivr\.net/, (route) => route.fulfill({ status: 200, contentType: 'text/css', body: '' }));
  await page.addInitScript((url) => {
    if (!localStorage.getItem('server_url')) {
      localStorage.setItem('server_url', url);
      localStorage.setItem('ws_only', 'true');
    }
  }, nodes[0].url);
  await page.goto(`${web.url}/`);
  // No session yet: the UI opens its login form, pre-filled with the server URL.
  await page.getByLabel('Username').fill('ops');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: /connect/i }).click();

  await page.goto(`${web.url}/#/servers`);
  await waitUntil(async () => {
    const text = await page.locator('body').innerText();
    return text.includes('switchyard-a') && text.includes('switchyard-b');
  }, 15000, async () => `servers page: ${await page.locator('body').innerText()}\n${lines.join('\n')}`);
  const rows = await page.locator('tbody tr').allInnerTexts();
  const count = (id) => rows.find((r) => r.includes(id));
  assert.match(count('switchyard-a'), /\b2\b/, rows.join('\n'));
  assert.match(count('switchyard-b'), /\b3\b/, rows.join('\n'));

  await page.goto(`${web.url}/#/sockets`);
  await waitUntil(async () => (await page.locator('tbody tr').count()) >= 5, 10000, async () => await page.locator('body').innerText());

  await page.goto(`${web.url}/#/`);
  await page.waitForTimeout(2500);
  fs.mkdirSync(path.join(REPO, 'docs'), { recursive: true });
  await page.screenshot({ path: path.join(REPO, 'docs', 'admin-ui.png'), fullPage: true });
  await page.goto(`${web.url}/#/servers`);
  await page.waitForTimeout(500);
  await page.screenshot({ path: path.join(REPO, 'docs', 'admin-ui-servers.png'), fullPage: true });
  await context.close();
});
