// Plain-WebSocket and SSE clients for the end-to-end suites, speaking as the
// seeds' clients do: the `ws` package (the factory monitor's raw `ws`, and
// what a browser's `new WebSocket(url)` sends), and an SSE reader over
// Node's fetch streaming (what `EventSource` does: `Last-Event-ID` on
// reconnect, `event:`/`data:`/`id:` lines).

import WebSocket from 'ws';
import { withTimeout } from './helpers.js';

const open = new Set();

/** ws://… of a server's http URL. */
export const wsUrl = (server, path = '/ws', query = '') => `${server.url.replace('http', 'ws')}${path}${query}`;

/**
 * Opens a WebSocket; resolves once open. Records every JSON message in
 * `messages` and the close `{ code, reason }` in `closed`.
 */
export function wsOpen(url, { headers, autoPong = true, timeoutMs = 5000 } = {}) {
  const ws = new WebSocket(url, { headers, autoPong });
  open.add(ws);
  const client = {
    ws,
    messages: [],
    waiters: [],
    closed: null,
    send(obj) {
      ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
    },
    /** The next message (after index `from`) matching `pred`. */
    next(pred, ms = 5000, label = 'message', from = 0) {
      const found = client.messages.slice(from).find(pred);
      if (found) return Promise.resolve(found);
      return withTimeout(
        new Promise((resolve) => client.waiters.push({ pred, resolve })),
        ms,
        `${label}; got ${JSON.stringify(client.messages.slice(-5))}`,
      );
    },
    /** Sends `obj` with a fresh requestId and resolves with its reply. */
    async request(obj, ms = 5000) {
      const requestId = `r${Math.random().toString(36).slice(2)}`;
      const mark = client.messages.length;
      client.send({ ...obj, requestId });
      return client.next((m) => m.requestId === requestId, ms, `reply to ${JSON.stringify(obj)}`, mark);
    },
    /** Messages of event type `type` (any frame format, batches unpacked). */
    events(type) {
      return client.messages
        .flatMap((m) => (m.type === 'batch' ? m.messages : [m]))
        .filter((m) => m.type === type);
    },
    whenClosed(ms = 5000) {
      if (client.closed) return Promise.resolve(client.closed);
      return withTimeout(
        new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))),
        ms,
        'close',
      );
    },
    close() {
      ws.close();
    },
    kill() {
      ws.terminate();
    },
  };
  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      msg = { unparsed: data.toString() };
    }
    client.messages.push(msg);
    client.waiters = client.waiters.filter((w) => {
      if (w.pred(msg)) {
        w.resolve(msg);
        return false;
      }
      return true;
    });
  });
  ws.on('close', (code, reason) => {
    client.closed = { code, reason: reason.toString() };
    open.delete(ws);
  });
  ws.on('error', () => {});
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    }),
    timeoutMs,
    `open ${url}`,
  );
}

/** Opens and waits for the `session` message (any format). */
export async function wsSession(url, opts) {
  const c = await wsOpen(url, opts);
  const session = await c.next((m) => m.type === 'session', 5000, 'session');
  return { c, session: session.payload ?? session.data ?? session };
}

/**
 * An SSE reader (what EventSource does): parses `event:`, `data:`, `id:`,
 * `retry:` and comments. `events` holds `{ event, data, id }` (data parsed).
 */
export async function sseOpen(url, { headers = {}, lastEventId } = {}) {
  const controller = new AbortController();
  const h = { accept: 'text/event-stream', ...headers };
  if (lastEventId !== undefined) h['last-event-id'] = lastEventId;
  const res = await fetch(url, { headers: h, signal: controller.signal });
  const client = {
    status: res.status,
    res,
    events: [],
    comments: [],
    retry: null,
    lastEventId: lastEventId ?? null,
    ended: false,
    waiters: [],
    next(pred, ms = 5000, label = 'sse event') {
      const found = client.events.find(pred);
      if (found) return Promise.resolve(found);
      return withTimeout(
        new Promise((resolve) => client.waiters.push({ pred, resolve })),
        ms,
        `${label}; got ${JSON.stringify(client.events.slice(-5))}`,
      );
    },
    close() {
      controller.abort();
    },
  };
  if (res.status !== 200) {
    client.body = await res.json();
    return client;
  }
  open.add({ terminate: () => controller.abort() });
  (async () => {
    const decoder = new TextDecoder();
    let buf = '';
    let cur = { data: [] };
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, '');
          buf = buf.slice(i + 1);
          if (line === '') {
            if (cur.data.length) {
              const text = cur.data.join('\n');
              let data;
              try {
                data = JSON.parse(text);
              } catch {
                data = text;
              }
              const ev = { event: cur.event ?? 'message', data, id: cur.id };
              if (cur.id !== undefined) client.lastEventId = cur.id;
              client.events.push(ev);
              client.waiters = client.waiters.filter((w) => {
                if (w.pred(ev)) {
                  w.resolve(ev);
                  return false;
                }
                return true;
              });
            }
            cur = { data: [] };
          } else if (line.startsWith(':')) {
            client.comments.push(line.slice(1).trim());
          } else {
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'data') cur.data.push(value);
            else if (field === 'event') cur.event = value;
            else if (field === 'id') cur.id = value;
            else if (field === 'retry') client.retry = Number(value);
          }
        }
      }
    } catch {
      // aborted
    }
    client.ended = true;
  })();
  return client;
}

export function closeAllPlain() {
  for (const ws of open) {
    try {
      ws.terminate();
    } catch {
      // gone
    }
  }
  open.clear();
}
