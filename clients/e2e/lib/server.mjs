// The real switchyard binary for browser tests: free port, temporary SQLite
// database, the dashboard's catalog file, and kill/restart on the same port
// and database (the "server killed and restarted" test).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLIENTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO = path.resolve(CLIENTS, '..');
export const SECRET = 'switchyard-browser-tests-0123456789abcdef';
export const API_KEY = 'browser-tests-key';
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `pred` every 50 ms until truthy; throws `message` after `ms`. */
export async function waitUntil(pred, ms, message) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout after ${ms} ms: ${typeof message === 'function' ? await message() : message}`);
    await sleep(50);
  }
}

const running = new Set();
process.on('exit', () => {
  for (const s of running) s.proc?.kill('SIGKILL');
});

const SERVER_VARS = ['HOST', 'PORT', 'DATABASE_URL', 'REDIS_URL', 'JWT_SECRET', 'JWT_PUBLIC_KEY_FILE', 'JWT_ISSUER', 'JWT_AUDIENCE',
  'JWT_LEEWAY', 'JWT_MAX_TTL', 'API_KEYS', 'ADMIN_API_KEYS', 'CORS_ORIGINS', 'CATALOG_FILE', 'WS_MAX_SUBSCRIPTIONS', 'WS_RATE_LIMIT',
  'WS_RATE_BURST', 'WS_PRESENCE', 'WS_PRESENCE_GRACE_MS', 'WS_PING_INTERVAL', 'WS_PING_TIMEOUT', 'RUST_LOG', 'LOG_FORMAT', 'SWITCHYARD_ENV'];

/**
 * Starts `switchyard serve`. Returns { url, port, env, stop(), kill(), restart(), logs(), http helpers }.
 */
export async function startServer(extra = {}) {
  const bin = process.env.SWITCHYARD_BIN || path.join(REPO, 'target', 'debug', 'switchyard');
  if (!fs.existsSync(bin)) throw new Error(`switchyard binary not found at ${bin}: run \`cargo build\` or set SWITCHYARD_BIN`);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-browser-'));
  const env = { ...process.env };
  for (const k of SERVER_VARS) delete env[k];
  Object.assign(env, {
    HOST: '127.0.0.1', PORT: String(port), DATABASE_URL: `sqlite://${path.join(dir, 'sy.db')}`, JWT_SECRET: SECRET,
    JWT_LEEWAY: '0', API_KEYS: API_KEY, CATALOG_FILE: path.join(CLIENTS, 'dashboard', 'catalog.json'),
    WS_PRESENCE_GRACE_MS: '1000', SWITCHYARD_ENV: 'development', RUST_LOG: process.env.SY_TEST_RUST_LOG || 'warn', NO_COLOR: '1',
    ...extra,
  });
  const s = { url: `http://127.0.0.1:${port}`, port, env, dir, proc: null, buf: '' };
  const spawnIt = async () => {
    const proc = spawn(bin, ['serve'], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    s.proc = proc;
    const add = (c) => {
      s.buf = (s.buf + c).slice(-200000);
    };
    proc.stdout.on('data', add);
    proc.stderr.on('data', add);
    s.exit = new Promise((r) => proc.once('exit', r));
    running.add(s);
    await waitUntil(async () => {
      if (proc.exitCode !== null) throw new Error(`switchyard exited (${proc.exitCode}):\n${s.buf}`);
      try {
        return (await fetch(`${s.url}/health/live`, { signal: AbortSignal.timeout(1000) })).ok;
      } catch {
        return false;
      }
    }, 20000, () => `switchyard did not become live:\n${s.buf}`);
  };
  await spawnIt();
  Object.assign(s, {
    logs: () => s.buf,
    /** SIGKILL: no shutdown, no cursor saving — a crash. */
    async kill() {
      s.proc.kill('SIGKILL');
      await s.exit;
      running.delete(s);
    },
    async restart() {
      await spawnIt();
    },
    async stop() {
      if (!running.has(s)) return;
      s.proc.kill('SIGTERM');
      const done = await Promise.race([s.exit.then(() => true), sleep(5000).then(() => false)]);
      if (!done) s.proc.kill('SIGKILL');
      running.delete(s);
      fs.rmSync(dir, { recursive: true, force: true });
    },
    publish: (events) => api(s, 'POST', '/api/v1/events', events),
    telemetry: (readings) => api(s, 'POST', '/api/v1/telemetry', readings),
    history: (companyId, room, after = 0) => api(s, 'GET', `/api/v1/events?companyId=${companyId}&room=${encodeURIComponent(room)}&after=${after}&limit=1000`),
    documentHistory: (companyId, type, id) => api(s, 'GET', `/api/v1/documents/${type}/${id}/history?companyId=${companyId}&limit=1000`),
    document: (companyId, type, id) => api(s, 'GET', `/api/v1/documents/${type}/${id}?companyId=${companyId}`),
    /** A Prometheus counter's value (sum over series matching every label given). */
    async metric(name, labels = {}) {
      const text = await (await fetch(`${s.url}/metrics`)).text();
      let sum = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith(name)) continue;
        const m = /^([a-z_]+)(\{([^}]*)\})?\s+([0-9.e+-]+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const ls = Object.fromEntries([...(m[3] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
        if (Object.entries(labels).every(([k, v]) => ls[k] === v)) sum += Number(m[4]);
      }
      return sum;
    },
  });
  return s;
}

async function api(s, method, p, body) {
  const res = await fetch(`${s.url}${p}`, {
    method,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error(`${method} ${p} -> ${res.status} ${text}`);
  return json;
}

/** Every event of a room from the history API (all pages). */
export async function allEvents(server, companyId, room) {
  const out = [];
  let after = 0;
  for (let i = 0; i < 100; i++) {
    const page = await server.history(companyId, room, after);
    out.push(...page.events);
    if (page.next == null) return out;
    after = page.next;
  }
  return out;
}
