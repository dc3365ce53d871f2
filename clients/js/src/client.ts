// The Switchyard client: one socket.io connection with token refresh,
// ref-counted rooms re-subscribed with offsets after every reconnect,
// de-duplicated delivery, batched `events:ack`, and the durable outbox.
// Documents, presence and typing are in views.ts.

import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import { EPHEMERAL_TYPES } from './catalog.gen';
import { OffsetBook, automaticRooms } from './offsets';
import { Outbox, SwitchyardError, randomId, type OutboxHooks } from './outbox';
import { Pool, Signal } from './pool';
import { autoStore, memoryStore, type OutboxEntry, type Store } from './storage';
import { TokenKeeper, type Claims, type TokenSource } from './token';
import type { Ack, ConnectionState, DocumentConflict, EventMeta, Session, SwitchyardErrorBody, SwitchyardEvents } from './types';
import { Views, type DocumentView, type PresenceView, type TypingView } from './views';

export interface ClientOptions {
  /** Server URL, e.g. `http://localhost:3001`. */
  url: string;
  /** A JWT, or a function returning a fresh one (called on connect, before `exp`, after TOKEN_EXPIRED, on wake-up). */
  token: TokenSource;
  /** Stable id of this device (offline-queue cursor on the server); default: generated once and stored. */
  deviceId?: string;
  /** Where offsets and the outbox live: IndexedDB when available (`auto`), `memory`, or your own. */
  storage?: 'auto' | 'memory' | Store;
  /** Ephemeral event types (never queued); default: the built-in catalog's. */
  ephemeralTypes?: readonly string[];
  /** ms to wait for an ack before treating it as a timeout (10000). */
  ackTimeoutMs?: number;
  /** ms between batched `events:ack` (1000). */
  ackIntervalMs?: number;
  /** ms a released room/document/presence/typing subscription lingers before it is left (250). */
  releaseDelayMs?: number;
  /** The server could not replay a room from the offset we had (retention): refetch that room's state. */
  onGap?: (room: string, oldestOffset: number) => void;
  /** A document update of ours was merged and some fields conflicted. */
  onConflict?: (conflict: DocumentConflict) => void;
  /** An outbox entry was refused for good (VALIDATION_FAILED, FORBIDDEN, …) and dropped. */
  onDrop?: (entry: OutboxEntry, error: SwitchyardErrorBody) => void;
  /** Extra socket.io-client options (default transports: websocket). */
  socket?: Partial<ManagerOptions & SocketOptions>;
}

export interface RoomState {
  status: 'pending' | 'joined' | 'denied';
  error: SwitchyardErrorBody | null;
}

export interface PublishOptions {
  room?: string;
  priority?: 'low' | 'medium' | 'high' | 'critical';
}

export interface PublishResult {
  id?: string;
  offset?: number;
  [k: string]: unknown;
}

type AnyHandler = (payload: never, meta: EventMeta) => void;
/** Event names of the map (autocompleted), or any other string. */
export type EventName<E> = (keyof E & string) | (string & {});
/** The payload of `K` in the map, `unknown` for types the map does not know. */
export type PayloadOf<E, K> = K extends keyof E ? E[K] : unknown;

const INITIAL: ConnectionState = { status: 'disconnected', replaying: false, replayed: 0, lastError: null, pending: 0, session: null };
const codeOf = (message: string): string | null => /^([A-Z_]+):/.exec(message)?.[1] ?? null;
const hasWindow = () => typeof window !== 'undefined' && typeof document !== 'undefined';

export class SwitchyardClient<E extends object = SwitchyardEvents> {
  private socket: Socket | null = null;
  private tokens: TokenKeeper;
  private store: Promise<Store> | null = null;
  private scope: string | null = null;
  private scoping: Promise<void> | null = null;
  /** @internal */ book = new OffsetBook();
  /** @internal */ outbox: Outbox | null = null;
  /** @internal */ waiting = new Map<string, { resolve: (v: never) => void; reject: (e: Error) => void }>();
  private handlers = new Map<string, Signal<[never, EventMeta]>>();
  private stateSig = new Signal();
  private gapSig = new Signal<[string, number]>();
  private state: ConnectionState = INITIAL;
  private rooms: Pool<{ state: RoomState; sig: Signal }>;
  private views: Views;
  private ephemeral: Set<string>;
  private t: Record<'refresh' | 'ack' | 'persist' | 'retry' | 'replay' | 'close', ReturnType<typeof setTimeout> | undefined> = {
    refresh: undefined, ack: undefined, persist: undefined, retry: undefined, replay: undefined, close: undefined,
  };
  private everConnected = false;
  private expired = false;
  private expiredStreak = 0;
  private retries = 0;
  private tokenFailed = false;
  private offline = false;
  private subscribing = 0;
  private replayedCount = 0;
  private retains = 0;
  private unlisten: (() => void) | null = null;
  private deviceId: string | undefined;

  constructor(readonly options: ClientOptions) {
    this.tokens = new TokenKeeper(options.token);
    this.deviceId = options.deviceId;
    this.ephemeral = new Set(options.ephemeralTypes ?? EPHEMERAL_TYPES);
    const delay = () => options.releaseDelayMs ?? 250;
    this.rooms = new Pool<{ state: RoomState; sig: Signal }>(
      () => ({ state: { status: 'pending', error: null }, sig: new Signal() }),
      (room) => this.connected() && this.socket?.emit('unsubscribe', { room }),
      delay,
    );
    this.views = new Views(this as never, delay);
  }

  // ---------------------------------------------------------------- state

  getState = (): ConnectionState => this.state;

  onState = (fn: () => void): (() => void) => this.stateSig.on(fn);

  /** `replay:truncated`: events of `room` before `oldestOffset` are gone (see `onGap`). */
  onGap(fn: (room: string, oldestOffset: number) => void): () => void {
    return this.gapSig.on(fn);
  }

  /** @internal */
  setState(patch: Partial<ConnectionState>): void {
    const next = { ...this.state, ...patch };
    if ((Object.keys(patch) as Array<keyof ConnectionState>).every((k) => next[k] === this.state[k])) return;
    this.state = next;
    this.stateSig.emit();
  }

  /** @internal */
  connected(): boolean {
    return this.state.status === 'connected' && !this.offline && !!this.socket?.connected;
  }

  /** @internal */
  userId(): string | null {
    return this.state.session?.userId ?? this.tokens.claims?.userId ?? null;
  }

  // ---------------------------------------------------------------- life cycle

  /** Opens the connection (idempotent). Never called during render by the React provider. */
  connect(): this {
    clearTimeout(this.t.close);
    if (!this.socket) this.socket = this.createSocket();
    this.listenWindow();
    if (!this.socket.connected) {
      this.setState({ status: this.everConnected ? 'reconnecting' : 'connecting' });
      this.socket.connect();
    }
    return this;
  }

  /** Closes the connection; subscriptions are kept and resumed by the next `connect()`. */
  close(): void {
    for (const k of ['refresh', 'ack', 'retry', 'replay', 'close'] as const) clearTimeout(this.t[k]);
    this.unlisten?.();
    this.unlisten = null;
    this.socket?.disconnect();
    this.outbox?.stop();
    void this.persist();
    this.setState({ status: 'disconnected', replaying: false });
  }

  /** Keeps the client connected while retained; the last release closes it after `releaseDelayMs`. */
  retain(): () => void {
    this.retains++;
    clearTimeout(this.t.close);
    if (this.state.status === 'disconnected') this.connect();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.retains === 0) this.t.close = setTimeout(() => this.close(), this.options.releaseDelayMs ?? 250);
    };
  }

  private createSocket(): Socket {
    const s = io(this.options.url, {
      autoConnect: false,
      transports: ['websocket'],
      ...this.options.socket,
      auth: (cb) => this.auth(cb),
    });
    s.on('connect', () => {
      this.replayedCount = 0;
      this.setState({ replaying: true, replayed: 0 });
    });
    s.on('connect_error', (err) => this.onConnectError(err));
    s.on('disconnect', (reason) => this.onDisconnect(reason));
    s.onAny((event: string, payload: unknown, meta: unknown) => this.onEvent(event, payload, meta as EventMeta | undefined));
    return s;
  }

  private auth(cb: (data: object) => void): void {
    this.prepare(this.tokens.expired()).then(
      (token) => {
        this.tokenFailed = false;
        cb({ token, deviceId: this.deviceId, offsets: this.book.pick(this.autoRooms()) });
      },
      () => {
        // The token source failed (network): the server will say UNAUTHORIZED, which is then retried, not fatal.
        this.tokenFailed = true;
        cb({ deviceId: this.deviceId });
      },
    );
  }

  /** @internal The current token; loads the (user, company, device) scope's offsets and outbox on first use. */
  async prepare(fresh = false): Promise<string> {
    const token = await this.tokens.get(fresh);
    const c = this.tokens.claims;
    if (c) await this.enterScope(c);
    return token;
  }

  private async enterScope(c: Claims): Promise<void> {
    this.store ??= this.options.storage === 'memory' ? Promise.resolve(memoryStore())
      : typeof this.options.storage === 'object' ? Promise.resolve(this.options.storage) : autoStore();
    const store = await this.store;
    if (!this.deviceId) {
      this.deviceId = (await store.get<string>('deviceId')) ?? `d-${randomId(8)}`;
      await store.set('deviceId', this.deviceId);
    }
    const scope = `${c.companyId}/${c.userId}/${this.deviceId}`;
    if (scope === this.scope) return this.scoping ?? undefined;
    this.scope = scope;
    this.scoping = (async () => {
      this.book = new OffsetBook((await store.get(`offsets:${scope}`)) ?? {});
      this.outbox?.stop();
      this.outbox = new Outbox(store, scope, this.outboxHooks());
      await this.outbox.count();
    })();
    return this.scoping;
  }

  private autoRooms(): string[] {
    const c = this.tokens.claims;
    return c ? automaticRooms(c.userId, c.role) : [];
  }

  private onConnectError(err: Error): void {
    const code = codeOf(err.message);
    const s = this.socket;
    if (!s) return;
    if (s.active) {
      // Transport-level failure: socket.io's manager retries by itself.
      this.setState({ status: this.everConnected ? 'reconnecting' : 'connecting', lastError: code ?? this.state.lastError, replaying: false });
      return;
    }
    // Refused by the server: socket.io does not retry; we decide.
    if ((code === 'UNAUTHORIZED' || code === 'INVALID_TOKEN') && !this.tokenFailed) return this.stop(code);
    if (code === 'TOKEN_EXPIRED') {
      if (!this.tokens.refreshable || ++this.expiredStreak > 2) return this.stop(code);
      this.tokens.current = null;
    }
    this.retryLater(code);
  }

  private onDisconnect(reason: string): void {
    clearTimeout(this.t.refresh);
    for (const r of this.rooms.values()) this.setRoom(r, { status: 'pending', error: null });
    if (reason === 'io client disconnect') return;
    this.setState({ status: 'reconnecting', replaying: false });
    if (reason === 'io server disconnect') {
      // After session:expired: reconnect with a fresh token; otherwise (kicked) after a back-off.
      if (this.expired) {
        if (!this.tokens.refreshable) return this.stop('TOKEN_EXPIRED');
        this.tokens.current = null;
      }
      this.retryLater(this.expired ? 'TOKEN_EXPIRED' : null);
    }
  }

  private retryLater(code: string | null): void {
    clearTimeout(this.t.retry);
    this.setState({ status: this.everConnected ? 'reconnecting' : 'connecting', lastError: code ?? this.state.lastError });
    const delay = this.expired ? 0 : Math.min(30000, 500 * 2 ** this.retries++) * (0.5 + Math.random() / 2);
    this.t.retry = setTimeout(() => !this.offline && this.socket?.connect(), delay);
  }

  private stop(code: string): void {
    for (const k of ['refresh', 'retry'] as const) clearTimeout(this.t[k]);
    this.setState({ status: 'unauthorized', lastError: code, replaying: false });
  }

  private onSession(s: Session): void {
    this.everConnected = true;
    this.expired = false;
    this.expiredStreak = 0;
    this.retries = 0;
    this.replayedCount = s.replayed;
    this.setState({ status: 'connected', session: s, replayed: s.replayed });
    const live = this.rooms.live();
    if (live.length) this.join(live);
    this.views.resume();
    this.endReplay();
    this.scheduleRefresh();
    void this.outbox?.flush();
  }

  // ---------------------------------------------------------------- tokens

  private scheduleRefresh(): void {
    clearTimeout(this.t.refresh);
    const ms = this.tokens.refreshIn();
    if (ms !== Infinity) this.t.refresh = setTimeout(() => void this.refreshToken(), Math.max(1000, ms));
  }

  private async refreshToken(): Promise<void> {
    let token: string;
    try {
      token = await this.tokens.get(true);
    } catch {
      this.t.refresh = setTimeout(() => void this.refreshToken(), 5000);
      return;
    }
    if (!this.connected()) return; // the next connect sends it
    const ack = await this.call('auth:refresh', { token });
    if (ack.ok) return this.scheduleRefresh();
    this.setState({ lastError: ack.error.code });
    // A role change needs a new connection (the server keeps a socket's role).
    if (ack.error.code === 'FORBIDDEN') this.socket?.io.engine?.close();
    else this.t.refresh = setTimeout(() => void this.refreshToken(), 2000);
  }

  private listenWindow(): void {
    if (this.unlisten || !hasWindow()) return;
    const wake = () => this.wake();
    const vis = () => document.visibilityState === 'visible' ? wake() : void this.persist();
    const off = () => this.goOffline();
    const hide = () => void this.persist();
    window.addEventListener('online', wake);
    window.addEventListener('offline', off);
    window.addEventListener('pagehide', hide);
    document.addEventListener('visibilitychange', vis);
    this.unlisten = () => {
      window.removeEventListener('online', wake);
      window.removeEventListener('offline', off);
      window.removeEventListener('pagehide', hide);
      document.removeEventListener('visibilitychange', vis);
    };
  }

  /** Back online or visible again (e.g. after sleep): fresh token if stale, reconnect now if down. */
  private wake(): void {
    const s = this.socket;
    if (!s || this.state.status === 'disconnected' || this.state.status === 'unauthorized') return;
    if (this.offline) {
      this.offline = false;
      s.io.reconnection(true);
    }
    if (this.tokens.refreshable && this.tokens.stale()) {
      if (this.connected()) void this.refreshToken();
      else this.tokens.current = null;
    }
    if (!s.connected) {
      // Try now rather than after the back-off. disconnect() first also clears a
      // reconnect that socket.io's manager abandoned while offline.
      clearTimeout(this.t.retry);
      s.disconnect().connect();
    }
  }

  /** The browser says offline: an open WebSocket may be dead without knowing it; stop trusting it. */
  private goOffline(): void {
    const s = this.socket;
    if (!s || this.state.status === 'disconnected' || this.state.status === 'unauthorized') return;
    this.offline = true;
    s.io.reconnection(false);
    s.io.engine?.close();
  }

  // ---------------------------------------------------------------- delivery

  private onEvent(event: string, payload: unknown, meta: EventMeta | undefined): void {
    if (event === 'session') return this.onSession(payload as Session);
    if (event === 'session:expired') this.expired = true;
    if (event === 'replay:truncated') {
      const p = payload as { room: string; oldestOffset: number };
      this.options.onGap?.(p.room, p.oldestOffset);
      this.gapSig.emit(p.room, p.oldestOffset);
    }
    this.views.onEvent(event, payload as Record<string, unknown>);
    if (meta && typeof meta.offset === 'number' && typeof meta.room === 'string') {
      if (!this.book.accept(meta.room, meta.offset)) return; // delivered before: drop
      if (this.state.replaying) this.bumpReplayed();
      this.schedule('ack', this.options.ackIntervalMs ?? 1000, () => this.sendAcks());
      this.schedule('persist', 250, () => void this.persist());
    }
    this.handlers.get(event)?.emit(payload as never, meta as EventMeta);
  }

  private schedule(k: 'ack' | 'persist' | 'replay', ms: number, fn: () => void): void {
    if (this.t[k] === undefined) this.t[k] = setTimeout(() => {
      this.t[k] = undefined;
      fn();
    }, ms);
  }

  private bumpReplayed(): void {
    this.replayedCount++;
    this.schedule('replay', 100, () => this.setState({ replayed: this.replayedCount }));
  }

  private endReplay(): void {
    if (this.subscribing === 0 && this.state.status === 'connected') {
      this.setState({ replaying: false, replayed: this.replayedCount });
    }
  }

  private sendAcks(): void {
    if (!this.connected()) return;
    const auto = new Set(this.autoRooms());
    for (const a of this.book.takeAcks((r) => auto.has(r))) this.socket?.emit('events:ack', a);
  }

  private async persist(): Promise<void> {
    const store = await this.store;
    if (store && this.scope) await store.set(`offsets:${this.scope}`, this.book.snapshot());
  }

  /** Listens to an event type; returns the function that stops listening. */
  on<K extends EventName<E>>(type: K, handler: (payload: PayloadOf<E, K>, meta: EventMeta) => void): () => void;
  on(type: string, handler: AnyHandler): () => void {
    let sig = this.handlers.get(type);
    if (!sig) this.handlers.set(type, (sig = new Signal()));
    const off = sig.on(handler);
    return () => {
      off();
      if (sig.size === 0 && this.handlers.get(type) === sig) this.handlers.delete(type);
    };
  }

  // ---------------------------------------------------------------- rooms

  /** Subscribes to a room (reference-counted); returns the release function. */
  subscribe(room: string): () => void {
    const { created } = this.rooms.retain(room);
    if (created && this.connected()) this.join([room]);
    let done = false;
    return () => {
      if (!done) this.rooms.release(room);
      done = true;
    };
  }

  /** A room's subscription state, for `useSyncExternalStore`; subscribing retains the room. */
  room(name: string): { getSnapshot: () => RoomState; subscribe: (fn: () => void) => () => void } {
    const idle: RoomState = { status: 'pending', error: null };
    return {
      getSnapshot: () => this.rooms.get(name)?.state ?? idle,
      subscribe: (fn) => {
        const release = this.subscribe(name);
        const off = (this.rooms.get(name) as { sig: Signal }).sig.on(fn);
        return () => {
          off();
          release();
        };
      },
    };
  }

  private setRoom(r: { state: RoomState; sig: Signal }, s: RoomState): void {
    if (r.state.status === s.status && r.state.error === s.error) return;
    r.state = s;
    r.sig.emit();
  }

  private async join(rooms: string[]): Promise<void> {
    this.subscribing++;
    const offsets = this.book.pick(rooms);
    // Rooms resumed from an offset replay what they missed before the ack.
    if (Object.keys(offsets).length) this.setState({ replaying: true });
    const ack = await this.call<{ rooms: string[]; denied: Array<{ room: string; code: string; message: string }> }>(
      'subscribe', { rooms, offsets });
    this.subscribing--;
    if (ack.ok) {
      for (const r of ack.rooms) { const e = this.rooms.get(r); if (e) this.setRoom(e, { status: 'joined', error: null }); }
      for (const d of ack.denied) {
        const e = this.rooms.get(d.room);
        if (e) this.setRoom(e, { status: 'denied', error: { code: d.code, message: d.message } });
        this.setState({ lastError: d.code });
      }
    }
    this.endReplay();
  }

  // ---------------------------------------------------------------- publishing

  /** @internal Emits with an ack; never throws (TIMEOUT / OFFLINE are acks too). */
  async call<T = Record<string, unknown>>(event: string, data: unknown): Promise<Ack<T>> {
    const s = this.socket;
    if (!s?.connected) return { ok: false, error: { code: 'OFFLINE', message: 'not connected' } };
    try {
      return await s.timeout(this.options.ackTimeoutMs ?? 10000).emitWithAck(event, data);
    } catch {
      return { ok: false, error: { code: 'TIMEOUT', message: `no answer to ${event}` } };
    }
  }

  /** @internal Emits without an ack when connected (typing). */
  send(event: string, data: unknown): void {
    if (this.connected()) this.socket?.emit(event, data);
  }

  isDurable(type: string): boolean {
    return !this.ephemeral.has(type);
  }

  /**
   * Publishes an event. Durable types go through the outbox (IndexedDB) with a
   * `clientEventId`: the promise resolves when the server has stored it, even
   * after disconnects. Ephemeral types are sent now or fail with OFFLINE.
   */
  publish<K extends EventName<E>>(type: K, payload: PayloadOf<E, K>, opts?: PublishOptions): Promise<PublishResult>;
  async publish(type: string, payload: unknown, opts: PublishOptions = {}): Promise<PublishResult> {
    const body: Record<string, unknown> = { type, payload, ...opts };
    if (!this.isDurable(type)) {
      const ack = await this.call<PublishResult>('event:publish', body);
      if (!ack.ok) throw new SwitchyardError(ack.error);
      return ack;
    }
    await this.prepare();
    body.clientEventId = randomId();
    return this.enqueue('event:publish', body);
  }

  /** @internal Stores an outbox entry; the promise settles when the server answered for good. */
  enqueue<T>(event: OutboxEntry['event'], body: Record<string, unknown>, entry = this.outbox?.entry(event, body)): Promise<T> {
    if (!this.outbox || !entry) return Promise.reject(new Error('switchyard: no token yet'));
    const p = new Promise<T>((resolve, reject) => this.waiting.set((entry as OutboxEntry).key, { resolve: resolve as never, reject }));
    void this.outbox.add(entry);
    return p;
  }

  private outboxHooks(): OutboxHooks {
    return {
      send: (event, body) => this.call(event, body),
      canSend: () => this.connected(),
      counted: (n) => this.setState({ pending: n }),
      settled: (entry, ack, verdict) => {
        this.views.settled(entry, ack);
        const w = this.waiting.get(entry.key);
        this.waiting.delete(entry.key);
        if (ack.ok) return w?.resolve(ack as never);
        this.setState({ lastError: ack.error.code });
        w?.reject(new SwitchyardError(ack.error));
        if (verdict === 'drop') this.options.onDrop?.(entry, ack.error);
      },
    };
  }

  /** Outbox entries waiting for the server (this user, company and device). */
  pendingEntries(): Promise<OutboxEntry[]> {
    return this.outbox?.entries() ?? Promise.resolve([]);
  }

  // ---------------------------------------------------------------- documents, presence, typing

  /** A shared document's local view (`useSyncExternalStore`-shaped); subscribing retains it. */
  document<T = Record<string, unknown>>(type: string, id: string): DocumentView<T> {
    return this.views.document<T>(type, id);
  }

  /** Who is in a room (`company` by default); subscribing retains it (and the room). */
  presence(room = 'company'): PresenceView {
    return this.views.presence(room);
  }

  /** Who is typing in a room, and `set(isTyping)` for this user (throttled). */
  typing(room: string): TypingView {
    return this.views.typing(room);
  }

  /** Counts for leak checks: handlers, rooms, views, socket.io listeners. */
  stats(): Record<string, number> {
    let handlers = 0;
    for (const s of this.handlers.values()) handlers += s.size;
    return {
      handlers,
      handlerTypes: this.handlers.size,
      rooms: this.rooms.size,
      liveRooms: this.rooms.live().length,
      stateListeners: this.stateSig.size,
      socketListeners: this.socket ? this.socket.listenersAny().length + ['connect', 'connect_error', 'disconnect'].reduce((n, e) => n + (this.socket as Socket).listeners(e).length, 0) : 0,
      ...this.views.stats(),
    };
  }
}

/** Creates a client; nothing is opened until `connect()`. */
export function createClient<E extends object = SwitchyardEvents>(options: ClientOptions): SwitchyardClient<E> {
  return new SwitchyardClient<E>(options);
}
