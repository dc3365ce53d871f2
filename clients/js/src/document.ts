// A document's local view (pure): the last server version, with the local
// changes that are not acknowledged yet overlaid in order. Server versions
// are applied in order (`document:updated` v after v − 1); a gap asks for a
// `document:get`, an older version is ignored.

import type { DocumentConflict, DocumentSnapshot, DocumentUpdated } from './types';

export type Changes = Record<string, unknown>;
export type DocStatus = 'loading' | 'ready' | 'error';

export interface DocView<T = Record<string, unknown>> {
  /** Server data with pending local changes applied. */
  data: T;
  /** The server version the view is based on (0 = does not exist yet). */
  version: number;
  /** Local changes not acknowledged yet. */
  pending: number;
  /** Conflicts reported to this client (last-write-wins decided against or for it). */
  conflicts: DocumentConflict[];
  status: DocStatus;
  error: string | null;
}

/** `changes` over `data`: `null` deletes a field (docs/protocol.md). */
export function overlay(data: Changes, changes: Changes): Changes {
  const out = { ...data };
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

export type UpdatedResult = 'applied' | 'ignored' | 'gap';

export class DocState<T = Record<string, unknown>> {
  private base: { version: number; data: Changes } | null = null;
  private pending: Array<{ key: string; changes: Changes }> = [];
  private held = new Map<number, DocumentUpdated>();
  private conflicts: DocumentConflict[] = [];
  private error: string | null = null;
  private view: DocView<T>;

  constructor() {
    this.view = this.compute();
  }

  snapshot(): DocView<T> {
    return this.view;
  }

  get version(): number {
    return this.base?.version ?? 0;
  }

  get loaded(): boolean {
    return this.base !== null;
  }

  /** A whole document from the server (`document:get`, an update's ack). */
  server(doc: Pick<DocumentSnapshot, 'version' | 'data'>): boolean {
    if (this.base && doc.version < this.base.version) return false;
    this.base = { version: doc.version, data: { ...doc.data } };
    for (const v of [...this.held.keys()]) if (v <= doc.version) this.held.delete(v);
    this.drain();
    return this.changed();
  }

  /** A `document:updated` broadcast. */
  updated(ev: DocumentUpdated): UpdatedResult {
    if (!this.base || ev.version > this.base.version + 1) {
      this.held.set(ev.version, ev);
      return 'gap';
    }
    if (ev.version <= this.base.version) return 'ignored';
    this.base = { version: ev.version, data: overlay(this.base.data, ev.changes) };
    this.drain();
    this.changed();
    return 'applied';
  }

  private drain(): void {
    for (;;) {
      const next = this.base && this.held.get(this.base.version + 1);
      if (!next || !this.base) return;
      this.held.delete(next.version);
      this.base = { version: next.version, data: overlay(this.base.data, next.changes) };
    }
  }

  addPending(key: string, changes: Changes): void {
    if (this.pending.some((p) => p.key === key)) return;
    this.pending.push({ key, changes });
    this.changed();
  }

  /** The server answered for a pending change (applied, merged or refused). */
  settle(key: string, doc?: Pick<DocumentSnapshot, 'version' | 'data'>, error?: string): void {
    this.pending = this.pending.filter((p) => p.key !== key);
    if (error) this.error = error;
    if (!doc || !this.server(doc)) this.changed();
  }

  conflict(c: DocumentConflict): void {
    this.conflicts = [...this.conflicts, c];
    this.changed();
  }

  clearConflicts(): void {
    this.conflicts = [];
    this.error = null;
    this.changed();
  }

  fail(message: string): void {
    this.error = message;
    this.changed();
  }

  private compute(): DocView<T> {
    let data = this.base?.data ?? {};
    for (const p of this.pending) data = overlay(data, p.changes);
    return {
      data: data as T,
      version: this.version,
      pending: this.pending.length,
      conflicts: this.conflicts,
      status: this.error && !this.base ? 'error' : this.base ? 'ready' : 'loading',
      error: this.error,
    };
  }

  private changed(): true {
    this.view = this.compute();
    return true;
  }
}
