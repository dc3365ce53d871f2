// Documents, presence and typing: reference-counted views over the client,
// each shaped for `useSyncExternalStore` ({ getSnapshot, subscribe }):
// subscribing retains (joins the room, fetches the state), the last
// unsubscribe releases after a delay.

import { DocState, type Changes, type DocView } from './document';
import { docKey, randomId, type Outbox } from './outbox';
import { Pool, Signal } from './pool';
import { PresenceState, TypingState } from './presence';
import type { OutboxEntry } from './storage';
import type { Ack, DocumentConflict, DocumentSnapshot, DocumentUpdated, PresenceUser } from './types';

/** What the views need from the client. */
export interface Core {
  call<T = Record<string, unknown>>(event: string, data: unknown): Promise<Ack<T>>;
  send(event: string, data: unknown): void;
  subscribe(room: string): () => void;
  connected(): boolean;
  userId(): string | null;
  prepare(): Promise<string>;
  enqueue<T>(event: OutboxEntry['event'], body: Record<string, unknown>, entry?: OutboxEntry): Promise<T>;
  outbox: Outbox | null;
  options: { onConflict?: (c: DocumentConflict) => void };
}

export interface Store<S> {
  getSnapshot(): S;
  subscribe(fn: () => void): () => void;
}

export type DocumentUpdateAck = { status: 'applied' | 'merged'; version: number; document: DocumentSnapshot; conflict?: DocumentConflict | null };

export interface DocumentView<T> extends Store<DocView<T>> {
  /** Applies `changes` locally now and queues them (outbox) for the server; `null` deletes a field. */
  update(changes: Partial<{ [K in keyof T]: T[K] | null }> & Changes): Promise<DocumentUpdateAck>;
  clearConflicts(): void;
}
export type PresenceView = Store<PresenceUser[]>;
export interface TypingView extends Store<string[]> {
  /** This user's typing state: `true` is sent at most every 2.5 s, `false` once. */
  set(isTyping: boolean): void;
}

interface DocEntry { type: string; id: string; state: DocState<unknown>; sig: Signal; release: () => void; getting: boolean }
interface PresenceEntry { state: PresenceState; sig: Signal; release?: () => void }
interface TypingEntry { state: TypingState; sig: Signal; release: () => void; on: boolean; sentAt: number; timer?: ReturnType<typeof setTimeout> }

const EMPTY_DOC = new DocState().snapshot();
const EMPTY: never[] = [];
const isAutomatic = (room: string) => room === 'company' || room.startsWith('user:') || room.startsWith('role:');

export class Views {
  private docs: Pool<DocEntry>;
  private presences: Pool<PresenceEntry>;
  private typers: Pool<TypingEntry>;
  private settledKeys = new Set<string>();

  constructor(private core: Core, delay: () => number) {
    this.docs = new Pool((key) => this.openDoc(key), (_, e) => e.release(), delay);
    this.presences = new Pool(
      (room) => {
        const e: PresenceEntry = { state: new PresenceState(room), sig: new Signal() };
        if (!isAutomatic(room)) e.release = core.subscribe(room);
        if (core.connected()) void this.list(e);
        return e;
      },
      (_, e) => e.release?.(),
      delay,
    );
    this.typers = new Pool<TypingEntry>(
      (room) => ({ state: new TypingState(), sig: new Signal(), release: core.subscribe(room), on: false, sentAt: 0 }),
      (room, e) => {
        if (e.on) core.send('user:typing', { room, isTyping: false });
        clearTimeout(e.timer);
        e.release();
      },
      delay,
    );
  }

  private view<S, E extends { sig: Signal }>(pool: Pool<E>, key: string, snap: (e: E) => S, empty: S): Store<S> {
    return {
      getSnapshot: () => {
        const e = pool.get(key);
        return e ? snap(e) : empty;
      },
      subscribe: (fn) => {
        const off = pool.retain(key).value.sig.on(fn);
        return () => {
          off();
          pool.release(key);
        };
      },
    };
  }

  // ------------------------------------------------------------ documents

  document<T>(type: string, id: string): DocumentView<T> {
    const key = `${type}:${id}`;
    return {
      ...(this.view(this.docs, key, (e) => e.state.snapshot(), EMPTY_DOC) as Store<DocView<T>>),
      update: (changes) => this.update(type, id, changes),
      clearConflicts: () => {
        const e = this.docs.get(key);
        e?.state.clearConflicts();
        e?.sig.emit();
      },
    };
  }

  private openDoc(key: string): DocEntry {
    const i = key.indexOf(':');
    const [type, id] = [key.slice(0, i), key.slice(i + 1)];
    const e: DocEntry = { type, id, state: new DocState(), sig: new Signal(), release: this.core.subscribe(`document:${type}:${id}`), getting: false };
    if (this.core.connected()) void this.get(e);
    // Changes queued before a reload are still pending: show them.
    void this.core.outbox?.entries().then((entries) => {
      for (const en of entries) {
        if (en.event === 'document:update' && docKey(en.body) === key && !this.settledKeys.has(en.key)) {
          e.state.addPending(en.key, en.body.changes as Changes);
        }
      }
      e.sig.emit();
    });
    return e;
  }

  private async get(e: DocEntry): Promise<void> {
    if (e.getting) return;
    e.getting = true;
    const ack = await this.core.call<{ document: DocumentSnapshot }>('document:get', { type: e.type, id: e.id });
    e.getting = false;
    if (ack.ok) e.state.server(ack.document);
    else e.state.fail(`${ack.error.code}: ${ack.error.message}`);
    e.sig.emit();
  }

  private update(type: string, id: string, changes: Changes): Promise<DocumentUpdateAck> {
    const outbox = this.core.outbox;
    if (!outbox) return this.core.prepare().then(() => this.update(type, id, changes));
    const e = this.docs.get(`${type}:${id}`);
    const body = { type, id, baseVersion: e?.state.version ?? 0, changes, editedAt: Date.now(), clientMutationId: randomId() };
    const entry = outbox.entry('document:update', body);
    // The local view changes now (synchronously: controlled inputs keep their caret).
    e?.state.addPending(entry.key, changes);
    e?.sig.emit();
    return this.core.enqueue('document:update', body, entry);
  }

  // ------------------------------------------------------------ presence and typing

  presence(room: string): PresenceView {
    return this.view(this.presences, room, (e) => e.state.snapshot(), EMPTY as PresenceUser[]);
  }

  private async list(e: PresenceEntry): Promise<void> {
    const ack = await this.core.call<{ users: PresenceUser[] }>('presence:list', { room: e.state.room });
    if (ack.ok) {
      e.state.list(ack.users);
      e.sig.emit();
    }
  }

  typing(room: string): TypingView {
    return {
      ...this.view(this.typers, room, (e) => e.state.snapshot(), EMPTY as string[]),
      set: (isTyping) => {
        const e = this.typers.get(room);
        if (!e || !this.core.connected()) return;
        const now = Date.now();
        if (isTyping && (!e.on || now - e.sentAt > 2500)) {
          this.core.send('user:typing', { room, isTyping: true });
          e.sentAt = now;
        } else if (!isTyping && e.on) {
          this.core.send('user:typing', { room, isTyping: false });
        }
        e.on = isTyping;
      },
    };
  }

  // ------------------------------------------------------------ server events

  /** After every `session`: fetch what may have changed while away. */
  resume(): void {
    for (const e of this.docs.values()) void this.get(e);
    for (const e of this.presences.values()) void this.list(e);
  }

  onEvent(event: string, p: Record<string, unknown>): void {
    if (event === 'document:updated') {
      const e = this.docs.get(docKey(p));
      const r = e?.state.updated(p as unknown as DocumentUpdated);
      if (e && r === 'gap') void this.get(e);
      if (r === 'applied') e?.sig.emit();
    } else if (event === 'document:conflict') {
      const e = this.docs.get(docKey(p));
      e?.state.conflict(p as unknown as DocumentConflict);
      e?.sig.emit();
      this.core.options.onConflict?.(p as unknown as DocumentConflict);
    } else if (event === 'user:typing') {
      const e = this.typers.get(p.room as string);
      if (!e || p.userId === this.core.userId()) return;
      if (e.state.set(p.userId as string, p.isTyping as boolean)) e.sig.emit();
      clearTimeout(e.timer);
      e.timer = setTimeout(() => e.state.expire() && e.sig.emit(), 6100);
    } else if (event.startsWith('user:o') || event.startsWith('presence:')) {
      for (const e of this.presences.values()) if (e.state.apply(event, p)) e.sig.emit();
    }
  }

  /** An outbox entry got its final answer. */
  settled(entry: OutboxEntry, ack: Ack<Record<string, unknown>>): void {
    if (entry.event !== 'document:update') return;
    if (this.settledKeys.size > 1000) this.settledKeys.clear();
    this.settledKeys.add(entry.key);
    const e = this.docs.get(docKey(entry.body));
    if (!e) return;
    if (ack.ok) e.state.settle(entry.key, ack.document as DocumentSnapshot);
    else e.state.settle(entry.key, undefined, `${ack.error.code}: ${ack.error.message}`);
    e.sig.emit();
  }

  stats(): Record<string, number> {
    return { documents: this.docs.size, presence: this.presences.size, typing: this.typers.size };
  }
}
