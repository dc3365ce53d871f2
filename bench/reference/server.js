// Reference server for Switchyard's benchmarks: the bench subset of the
// Switchyard protocol, written the way a team would on plain Node socket.io
// 4.8 with default settings (no tuning, no native add-ons, no cluster).
//
// - JWT (HS256, JWT_SECRET) in `auth.token`, verified with jsonwebtoken.
// - Automatic rooms `company:{companyId}` and `user:{companyId}:{sub}`;
//   clients use logical names (`company`, entity rooms like `order:1`).
// - `session` after connect; `ping` → `{ pong: true, serverTime }`.
// - `subscribe { room }` or `{ rooms }` for entity rooms (durable scenario).
// - `event:publish { type, room?, payload }` of a known type → delivered to
//   the room except the sender as (payload, meta), ack `{ ok: true, id }`.
//   Nothing is stored: there is no durable log, no offsets, no replay.
// - `GET /health/websocket`.
//
// PORT (default 3002) and JWT_SECRET from the environment.

import { randomUUID } from "node:crypto";
import http from "node:http";

import jwt from "jsonwebtoken";
import { Server } from "socket.io";

const PORT = Number(process.env.PORT ?? 3002);
const SECRET = process.env.JWT_SECRET;
if (!SECRET) {
  console.error("JWT_SECRET is required");
  process.exit(1);
}

// The event types the benchmark publishes: required payload fields and
// which roles may publish them from a socket.
const SUPERVISORS = new Set(["supervisor", "manager", "admin"]);
const CATALOG = {
  "dashboard:refresh": { required: ["timestamp"], publish: SUPERVISORS },
  "order:status_changed": {
    required: ["orderId", "oldStatus", "newStatus", "timestamp"],
    publish: SUPERVISORS,
  },
};
const ROOM = /^[a-z][a-z0-9_-]*(:[A-Za-z0-9_.@-]+)*$/;
const started = Date.now();

const httpServer = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/health/websocket") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        status: "ok",
        service: "websocket",
        connectedClients: io.engine.clientsCount,
        node: `reference-${process.pid}`,
        adapter: "local",
        uptimeSeconds: Math.floor((Date.now() - started) / 1000),
        version: "reference",
      }),
    );
    return;
  }
  res.writeHead(404).end();
});

const io = new Server(httpServer);

const internal = (companyId, logical) => `${companyId}/${logical}`;

io.use((socket, next) => {
  const token = socket.handshake.auth?.token;
  if (!token) return next(new Error("UNAUTHORIZED: no token"));
  jwt.verify(token, SECRET, { algorithms: ["HS256"] }, (err, claims) => {
    if (err) {
      const code = err.name === "TokenExpiredError" ? "TOKEN_EXPIRED" : "INVALID_TOKEN";
      return next(new Error(`${code}: ${err.message}`));
    }
    const userId = claims.sub ?? claims.userId;
    if (!userId || !claims.companyId || !claims.role) {
      return next(new Error("INVALID_TOKEN: missing claims"));
    }
    socket.data = { userId: String(userId), companyId: String(claims.companyId), role: claims.role };
    next();
  });
});

function error(code, message) {
  return { ok: false, error: { code, message } };
}

function publish(socket, data) {
  const { userId, companyId, role } = socket.data;
  const spec = CATALOG[data?.type];
  if (!spec) return error("UNKNOWN_EVENT", `unknown event type ${data?.type}`);
  if (!spec.publish.has(role)) return error("FORBIDDEN", `role ${role} may not publish ${data.type}`);
  const room = data.room ?? "company";
  if (typeof room !== "string" || !ROOM.test(room)) return error("INVALID_ROOM", "bad room");
  const payload = data.payload;
  if (typeof payload !== "object" || payload === null) {
    return error("VALIDATION_FAILED", "payload must be an object");
  }
  const missing = spec.required.find((f) => !(f in payload));
  if (missing) return error("VALIDATION_FAILED", `payload.${missing} is required`);
  const id = randomUUID();
  const meta = {
    id,
    type: data.type,
    room,
    timestamp: new Date().toISOString(),
    source: "socket",
    priority: "medium",
    publisher: userId,
  };
  socket.to(internal(companyId, room)).emit(data.type, payload, meta);
  return { ok: true, id };
}

io.on("connection", (socket) => {
  const { userId, companyId, role } = socket.data;
  socket.join([internal(companyId, "company"), internal(companyId, `user:${userId}`)]);
  socket.emit("session", {
    socketId: socket.id,
    userId,
    companyId,
    role,
    rooms: ["company", `user:${userId}`],
    serverTime: Date.now(),
    replayed: 0,
  });

  socket.on("ping", (...args) => {
    const ack = args.at(-1);
    if (typeof ack === "function") ack({ pong: true, serverTime: Date.now() });
  });

  socket.on("subscribe", (data, ack) => {
    const wanted = Array.isArray(data?.rooms) ? data.rooms : [data?.room];
    const rooms = [];
    const denied = [];
    for (const room of wanted) {
      if (typeof room === "string" && ROOM.test(room) && !room.startsWith("user:")) {
        rooms.push(room);
      } else {
        denied.push({ room, code: "INVALID_ROOM", message: "bad room" });
      }
    }
    socket.join(rooms.map((room) => internal(companyId, room)));
    if (typeof ack === "function") ack({ ok: true, rooms, denied });
  });

  socket.on("event:publish", (data, ack) => {
    const result = publish(socket, data);
    if (typeof ack === "function") ack(result);
  });
});

httpServer.listen(PORT, () => {
  console.log(`reference socket.io server listening on :${PORT}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
