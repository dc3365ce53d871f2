// Shared helpers for the end-to-end suites: they run the REAL socket.io-client
// (v4, and v2 for the old EIO=3 protocol) against the REAL switchyard binary.
//
// - servers: free port, spawn `switchyard serve` with a temp SQLite database,
//   wait for /health/live, capture its output, kill it at the end;
// - tokens: HS256 / RS256 / ES256 signing with node:crypto, and a factory of
//   bad tokens (alg none, wrong signature, expired, nbf, iss/aud, missing exp,
//   garbage, algorithm confusion);
// - clients: connect() resolving on `session`, emitAck(), waitFor(),
//   expectNoEvent(), and cleanup of every socket and server.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { it as nodeIt, test as nodeTest } from 'node:test';
import { io } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
export const DEFAULT_SECRET = 'switchyard-e2e-secret-0123456789abcdef';
export const ROLES = ['operator', 'supervisor', 'manager', 'admin'];

// ---------------------------------------------------------------------------
// small utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const randomId = (prefix = '') => prefix + crypto.randomBytes(6).toString('hex');
export const nowSec = () => Math.floor(Date.now() / 1000);

/** Rejects with `message` after `ms` unless `promise` settles first. */
export function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${message}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `pred` every 25 ms until it returns truthy; rejects after `ms`. */
export async function waitUntil(pred, ms, message) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout after ${ms} ms: ${message}`);
    await sleep(25);
  }
}

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

/** Resolves true when a TCP connection to host:port succeeds within `ms`. */
export function tcpReachable(host, port, ms = 2000) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(ms, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

// ---------------------------------------------------------------------------
// servers

const servers = new Set();
const LOG_LIMIT = 512 * 1024;

export function binaryPath() {
  const bin = process.env.SWITCHYARD_BIN || path.join(REPO_ROOT, 'target', 'debug', 'switchyard');
  if (!fs.existsSync(bin)) {
    throw new Error(`switchyard binary not found at ${bin}: run \`cargo build\` or set SWITCHYARD_BIN`);
  }
  return bin;
}

// Variables the server reads; inherited values are dropped so that a developer's
// shell cannot change what a test sees. Tests set what they need explicitly.
const SERVER_VARS = [
  'HOST', 'PORT', 'DATABASE_URL', 'REDIS_URL', 'REDIS_PREFIX', 'NODE_ID', 'JWT_SECRET',
  'JWT_PUBLIC_KEY_FILE', 'JWT_ISSUER', 'JWT_AUDIENCE', 'JWT_LEEWAY', 'API_KEYS', 'CORS_ORIGINS',
  'WS_PING_INTERVAL', 'WS_PING_TIMEOUT', 'WS_MAX_CONNECTIONS', 'WS_MAX_CONNECTIONS_PER_IP',
  'WS_MAX_PAYLOAD', 'WS_MAX_SUBSCRIPTIONS', 'WS_RATE_LIMIT', 'WS_RATE_BURST',
  'WS_MESSAGE_QUEUE_TTL', 'WS_PRESENCE_TTL', 'WS_PRESENCE_GRACE_MS', 'LOG_FORMAT', 'RUST_LOG', 'SWITCHYARD_ENV',
  'CATALOG_FILE', 'DOCUMENT_MAX_BYTES', 'JWT_MAX_TTL', 'WS_USER_RATE_LIMIT', 'WS_USER_RATE_BURST',
  'API_KEY_FAILURE_LIMIT', 'DOCUMENT_MAX_FIELDS', 'HTTP_HEADER_TIMEOUT_MS', 'HTTP_BODY_TIMEOUT_MS', 'FORWARDED_HEADER',
  'HTTP_MAX_CONNECTIONS', 'WS_CONNECT_TIMEOUT_MS', 'WS_MAX_PENDING_PER_IP', 'METRICS_ADDR', 'SHUTDOWN_GRACE',
  'ADMIN_API_KEYS', 'ADMIN_TIMEOUT_MS', 'ADMIN_UI', 'ADMIN_UI_USERNAME', 'ADMIN_UI_PASSWORD', 'ADMIN_UI_READONLY',
  'RULES_FILE',
];

/**
 * Starts `switchyard serve` on a free port and waits for /health/live.
 * `env` entries override the defaults; an entry set to `undefined` removes the
 * variable (e.g. `{ JWT_SECRET: undefined }` for public-key mode).
 * Returns { url, port, name, env, proc, logs(), stop() }.
 */
export async function startServer(env = {}, { name = 'server', readyTimeoutMs = 20000 } = {}) {
  const bin = binaryPath();
  // A given PORT restarts a node where a balancer expects it.
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-e2e-'));
  const fullEnv = { ...process.env };
  for (const k of SERVER_VARS) delete fullEnv[k];
  Object.assign(fullEnv, {
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: `sqlite://${path.join(workdir, `sy-${randomId()}.db`)}`,
    JWT_SECRET: DEFAULT_SECRET,
    SWITCHYARD_ENV: 'development',
    LOG_FORMAT: 'text',
    RUST_LOG: process.env.SY_TEST_RUST_LOG || 'info',
    NO_COLOR: '1',
  });
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete fullEnv[k];
    else fullEnv[k] = String(v);
  }

  // cwd = a fresh temp dir, so a developer's .env in the repo is never loaded.
  const proc = spawn(bin, ['serve'], { env: fullEnv, cwd: workdir, stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  const append = (chunk) => {
    buf += chunk.toString();
    if (buf.length > LOG_LIMIT) buf = buf.slice(buf.length - LOG_LIMIT);
  };
  proc.stdout.on('data', append);
  proc.stderr.on('data', append);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });

  const url = `http://127.0.0.1:${port}`;
  const server = {
    name,
    url,
    port,
    env: fullEnv,
    proc,
    workdir,
    logs: () => buf,
    exited: () => exited,
    async stop() {
      servers.delete(server);
      if (exited) return exited;
      proc.kill('SIGTERM');
      const res = await Promise.race([exitPromise, sleep(5000).then(() => null)]);
      if (res) return res;
      proc.kill('SIGKILL');
      return exitPromise;
    },
  };
  servers.add(server);

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exited) {
      servers.delete(server);
      throw new Error(`${name} exited before becoming live (code ${exited.code}, signal ${exited.signal})\n--- ${name} output ---\n${buf}`);
    }
    try {
      const res = await fetch(`${url}/health/live`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`${name} did not answer 200 on /health/live within ${readyTimeoutMs} ms\n--- ${name} output ---\n${buf}`);
    }
    await sleep(100);
  }
}

export async function stopAllServers() {
  await Promise.all([...servers].map((s) => s.stop()));
}

/** The tail of every running server's output, for failure reports. */
export function serverLogs(maxPerServer = 8000) {
  return [...servers]
    .map((s) => {
      const l = s.logs();
      const tail = l.length > maxPerServer ? `…${l.slice(l.length - maxPerServer)}` : l;
      return `--- ${s.name} (${s.url}) output ---\n${tail}`;
    })
    .join('\n');
}

// Safety net: never leave a server behind, even if a file crashes.
process.on('exit', () => {
  for (const s of servers) {
    try {
      s.proc.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

export async function getJson(url, opts = {}) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000), ...opts });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

// ---------------------------------------------------------------------------
// tests that print the servers' output when they fail

function wrapFn(fn) {
  return async (t) => {
    try {
      return await fn(t);
    } catch (err) {
      const logs = serverLogs();
      if (logs) process.stderr.write(`\n[${t.name}] failed; server output follows\n${logs}\n`);
      throw err;
    }
  };
}

/** node:test `it`, with a default 30 s timeout and server output on failure. */
export function it(name, opts, fn) {
  if (typeof opts === 'function') [opts, fn] = [{}, opts];
  return nodeIt(name, { timeout: 30000, ...opts }, wrapFn(fn));
}

export function test(name, opts, fn) {
  if (typeof opts === 'function') [opts, fn] = [{}, opts];
  return nodeTest(name, { timeout: 30000, ...opts }, wrapFn(fn));
}

// ---------------------------------------------------------------------------
// tokens

export const b64url = (input) =>
  Buffer.from(typeof input === 'string' ? input : JSON.stringify(input)).toString('base64url');

function signingInput(header, claims) {
  return `${b64url(header)}.${b64url(claims)}`;
}

/** Standard claims; an option set to `undefined` removes that claim (e.g. `{ exp: undefined }`). */
export function claims(opts = {}) {
  const { ttl = 3600, ...rest } = opts;
  const c = { sub: 'u1', companyId: 'acme', role: 'operator', iat: nowSec(), exp: nowSec() + ttl, ...rest };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c;
}

export function signHS256(payload, secret = DEFAULT_SECRET, header = {}) {
  const input = signingInput({ alg: 'HS256', typ: 'JWT', ...header }, payload);
  const sig = crypto.createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${sig}`;
}

export function signRS256(payload, privateKey, header = {}) {
  const input = signingInput({ alg: 'RS256', typ: 'JWT', ...header }, payload);
  const sig = crypto.sign('sha256', Buffer.from(input), privateKey).toString('base64url');
  return `${input}.${sig}`;
}

export function signES256(payload, privateKey, header = {}) {
  const input = signingInput({ alg: 'ES256', typ: 'JWT', ...header }, payload);
  const sig = crypto
    .sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' })
    .toString('base64url');
  return `${input}.${sig}`;
}

/** A valid HS256 token for the default secret. */
export function token(opts = {}, secret = DEFAULT_SECRET) {
  return signHS256(claims(opts), secret);
}

/**
 * Generates a key pair and writes the public key (SPKI PEM) to a temp file.
 * kind: 'rsa' (RS256) or 'ec' (ES256, P-256).
 */
export function keyPair(kind) {
  const { publicKey, privateKey } =
    kind === 'rsa'
      ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
      : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sy-keys-'));
  const publicKeyFile = path.join(dir, `${kind}-public.pem`);
  fs.writeFileSync(publicKeyFile, publicPem);
  const sign = kind === 'rsa' ? signRS256 : signES256;
  return {
    publicKey,
    privateKey,
    publicPem,
    publicKeyFile,
    token: (opts = {}) => sign(claims(opts), privateKey),
  };
}

/**
 * Bad tokens, each refused for exactly one reason. `base` are claim overrides
 * (e.g. iss/aud for a server that requires them).
 */
export const badTokens = {
  algNone: (base = {}) => `${signingInput({ alg: 'none', typ: 'JWT' }, claims(base))}.`,
  wrongSignature: (base = {}) => signHS256(claims(base), `${DEFAULT_SECRET}-not-the-right-one`),
  tamperedPayload: (base = {}) => {
    // A valid token whose payload was changed afterwards (role escalated).
    const [h, , s] = token(base).split('.');
    return `${h}.${b64url(claims({ ...base, role: 'admin' }))}.${s}`;
  },
  expired: (base = {}) => signHS256(claims({ ...base, iat: nowSec() - 7200, exp: nowSec() - 3600 })),
  nbfFuture: (base = {}) => signHS256(claims({ ...base, nbf: nowSec() + 3600 })),
  wrongIssuer: (base = {}) => signHS256(claims({ ...base, iss: 'someone-else' })),
  wrongAudience: (base = {}) => signHS256(claims({ ...base, aud: 'another-service' })),
  missingExp: (base = {}) => signHS256(claims({ ...base, exp: undefined })),
  garbage: () => 'this-is-not-a-jwt',
  badRole: (base = {}) => signHS256(claims({ ...base, role: 'superuser' })),
  missingCompany: (base = {}) => signHS256(claims({ ...base, companyId: undefined })),
  /** HS256 signed with the server's public key PEM text as the HMAC secret. */
  algConfusion: (publicPem, base = {}) => signHS256(claims(base), publicPem),
};

// ---------------------------------------------------------------------------
// clients

const clients = new Set();

function track(socket, t) {
  clients.add(socket);
  const close = () => {
    clients.delete(socket);
    try {
      socket.close();
    } catch {
      // ignore
    }
  };
  socket.__close = close;
  if (t) t.after(close);
  // Every event received, in order, for "nothing else arrived" assertions.
  socket.__events = [];
  return socket;
}

/**
 * Connects a socket.io v4 client and resolves on `session` with
 * { socket, session }; rejects with the connect_error (err.message = server's).
 * opts are socket.io-client options (transports default to websocket only).
 * extra: { t, timeoutMs, onSocket(socket) called before the handshake starts }
 */
export function connect(url, opts = {}, { t, timeoutMs = 8000, onSocket } = {}) {
  const socket = io(url, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    ...opts,
  });
  track(socket, t);
  socket.onAny((event, ...args) => socket.__events.push({ event, args }));
  if (onSocket) onSocket(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.__close();
      reject(new Error(`timeout after ${timeoutMs} ms waiting for session (connected=${socket.connected})`));
    }, timeoutMs);
    // The first connection only: with `reconnection: true`, a later failed
    // attempt is the client's to retry, not a reason to close the socket.
    const onError = (err) => {
      clearTimeout(timer);
      socket.__close();
      reject(err);
    };
    socket.once('session', (session) => {
      clearTimeout(timer);
      socket.off('connect_error', onError);
      resolve({ socket, session });
    });
    socket.once('connect_error', onError);
  });
}

/** Connects and expects a refusal; returns the connect_error. */
export async function connectError(url, opts = {}, extra = {}) {
  try {
    const { socket, session } = await connect(url, opts, extra);
    socket.__close();
    throw Object.assign(new Error(`expected a connect_error but the server accepted the connection: ${JSON.stringify(session)}`), { accepted: true });
  } catch (err) {
    if (err.accepted) throw err;
    return err;
  }
}

/**
 * Connects a socket.io v2 client (Engine.IO v3). v2 has no auth payload: the
 * token goes in the query. Resolves on `session` with { socket, session }.
 */
export function connectV2(url, opts = {}, { t, timeoutMs = 8000 } = {}) {
  const socket = ioV2(url, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    ...opts,
  });
  track(socket, t);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.__close();
      reject(new Error(`timeout after ${timeoutMs} ms waiting for session from the v2 client (connected=${socket.connected})`));
    }, timeoutMs);
    socket.once('session', (session) => {
      clearTimeout(timer);
      resolve({ socket, session });
    });
    const fail = (err) => {
      clearTimeout(timer);
      socket.__close();
      reject(err instanceof Error ? err : new Error(`v2 error: ${JSON.stringify(err)}`));
    };
    socket.once('connect_error', fail);
    socket.once('error', fail);
  });
}

/** Emits with an ack and a timeout. `data === undefined` sends no argument. */
export function emitAck(socket, event, data, timeoutMs = 5000) {
  const s = socket.timeout(timeoutMs);
  return data === undefined ? s.emitWithAck(event) : s.emitWithAck(event, data);
}

/** Same for a v2 client (no timeout()/emitWithAck there). */
export function emitAckV2(socket, event, data, timeoutMs = 5000) {
  return withTimeout(
    new Promise((resolve) => {
      if (data === undefined) socket.emit(event, resolve);
      else socket.emit(event, data, resolve);
    }),
    timeoutMs,
    `ack for ${event}`,
  );
}

/**
 * socket.io-client v2 reserves the event names `ping` and `pong`: `emit('ping')`
 * never leaves the client. Other clients speaking the same protocol (EIO=3,
 * e.g. older Socket.IO-Client-Swift) can send it, so this writes the EVENT
 * packet with an ack id directly, through the v2 client's own packet API.
 */
export function rawEmitAckV2(socket, event, data, timeoutMs = 5000) {
  return withTimeout(
    new Promise((resolve) => {
      const id = socket.ids++;
      socket.acks[id] = resolve;
      socket.packet({ type: 2 /* EVENT */, data: data === undefined ? [event] : [event, data], id });
    }),
    timeoutMs,
    `ack for raw ${event}`,
  );
}

/** Resolves with the argument list of the next `event` on `socket`. */
export function waitFor(socket, event, timeoutMs = 5000) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => resolve(args);
    socket.once(event, handler);
  });
  return withTimeout(p, timeoutMs, `waiting for "${event}" on ${socket.id ?? 'socket'}`).catch((err) => {
    socket.off(event, handler);
    throw err;
  });
}

/** Resolves after `ms` if `event` did not arrive; rejects if it did. */
export function expectNoEvent(socket, event, ms = 500) {
  return new Promise((resolve, reject) => {
    const handler = (...args) => {
      clearTimeout(timer);
      reject(new Error(`unexpected "${event}" on ${socket.id}: ${JSON.stringify(args)}`));
    };
    const timer = setTimeout(() => {
      socket.off(event, handler);
      resolve();
    }, ms);
    socket.once(event, handler);
  });
}

export function closeAllClients() {
  for (const s of [...clients]) s.__close();
}

/** For `after()`: close every client, then stop every server. */
export async function cleanup() {
  closeAllClients();
  await stopAllServers();
  await dropPrivateDatabases();
}

/** Asserts `err.message` is `CODE: <sentence>`. */
export function assertCode(assert, err, code) {
  assert.ok(err instanceof Error, `expected an Error, got ${err}`);
  assert.match(err.message, new RegExp(`^${code}: \\S`), `connect_error message should start with "${code}: " but was ${JSON.stringify(err.message)}`);
}

export const sorted = (arr) => [...arr].sort();

/**
 * A fresh, empty PostgreSQL database on the server of `baseUrl`, for a suite
 * whose assertions a concurrently running suite could disturb through shared
 * rows: every node sweeps every company's presence rows, so a node of another
 * cluster (same database, other Redis) can settle a user and announce it on
 * its own cluster, where this suite never hears it. Returns its URL.
 */
export async function privateDatabase(baseUrl, prefix = 'sy_test') {
  const url = new URL(baseUrl);
  const name = `${prefix}_${crypto.randomBytes(6).toString('hex')}`;
  await psql(url, `CREATE DATABASE ${name}`);
  privateDatabases.push({ url: new URL(baseUrl), name });
  url.pathname = `/${name}`;
  return url.toString();
}

const privateDatabases = [];

/** Drops this process's private databases (their servers are stopped first). */
async function dropPrivateDatabases() {
  while (privateDatabases.length) {
    const { url, name } = privateDatabases.pop();
    await psql(url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch((e) => {
      process.stderr.write(`could not drop ${name}: ${e.message}\n`);
    });
  }
}

function psql(url, sql) {
  return new Promise((resolve, reject) => {
    const args = ['-h', url.hostname, '-p', url.port || '5432', '-U', decodeURIComponent(url.username || 'postgres'),
      '-d', url.pathname.slice(1) || 'postgres', '-v', 'ON_ERROR_STOP=1', '-qc', sql];
    const child = spawn('psql', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', (e) => reject(new Error(`psql not runnable (${e.message}): a private database is needed here`)));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${sql} failed: ${stderr.trim()}`))));
  });
}

/** Fails (never skips) when Postgres or Redis at these URLs does not answer on TCP. */
export async function requireServices(pgUrl, redisUrl) {
  const pg = new URL(pgUrl);
  const redis = new URL(redisUrl);
  for (const [what, host, port] of [['Postgres', pg.hostname, pg.port || 5432], ['Redis', redis.hostname, redis.port || 6379]]) {
    if (!(await tcpReachable(host, Number(port)))) throw new Error(`${what} at ${host}:${port} is not reachable; this suite does not skip`);
  }
}
