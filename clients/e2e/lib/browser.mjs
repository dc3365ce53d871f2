// Debian's chromium driven by playwright-core (no browser download ever), and
// a static web server for the built dashboard and the hooks fixture page,
// with the development token endpoint signed like the test server.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { devTokenMiddleware } from '../../dashboard/dev-token.mjs';
import { CLIENTS, SECRET, freePort } from './server.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Launches chromium. Playwright gives the browser a fresh temporary
 * user-data-dir; each `browser.newContext()` is a separate profile (own
 * IndexedDB, cookies, offline switch): one per user in the tests.
 */
export async function launch() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run clients/e2e/run.sh (it installs Debian's chromium) or apt-get install -y chromium`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml' };

/** Serves clients/dashboard/dist at / and clients/e2e/.build at /fixtures/, plus /dev-token. */
export async function startWeb() {
  const roots = { '/fixtures/': path.join(CLIENTS, 'e2e', '.build'), '/': path.join(CLIENTS, 'dashboard', 'dist') };
  const minted = [];
  const tokens = devTokenMiddleware(SECRET, { onMint: (c) => minted.push({ ...c, at: Date.now() }) });
  const server = http.createServer((req, res) => {
    tokens(req, res, () => {
      const url = new URL(req.url, 'http://x');
      const prefix = url.pathname.startsWith('/fixtures/') ? '/fixtures/' : '/';
      let file = path.join(roots[prefix], decodeURIComponent(url.pathname.slice(prefix.length)) || 'index.html');
      if (!file.startsWith(roots[prefix]) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(roots[prefix], 'index.html');
      if (!fs.existsSync(file)) {
        res.statusCode = 404;
        return res.end('not found (build the dashboard and the fixtures first)');
      }
      res.setHeader('content-type', TYPES[path.extname(file)] ?? 'application/octet-stream');
      res.end(fs.readFileSync(file));
    });
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}`,
    minted,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** Fails with the page's console output when a page crashes or logs an error. */
export function watchPage(page, label) {
  const lines = [];
  page.on('console', (m) => lines.push(`[${label} ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[${label} pageerror] ${e.message}`));
  page.__lines = lines;
  return lines;
}
