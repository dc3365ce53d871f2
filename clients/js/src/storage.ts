// Where offsets, the device id and the outbox live: IndexedDB in browsers
// (shared by the tabs of an origin), memory elsewhere (Node, private modes
// where IndexedDB refuses to open).

import { openDB, type IDBPDatabase } from 'idb';

export interface OutboxEntry {
  /** `${scope}\u0000${seq}`: sorts in creation order within a scope. */
  key: string;
  event: 'event:publish' | 'document:update';
  body: Record<string, unknown>;
  createdAt: number;
  attempts: number;
}

export interface Store {
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  /** Outbox entries of a scope, in key order. */
  outbox(scope: string): Promise<OutboxEntry[]>;
  put(entry: OutboxEntry): Promise<void>;
  remove(key: string): Promise<void>;
}

export const scopeRange = (scope: string): [string, string] => [`${scope}\u0000`, `${scope}\u0001`];

export function memoryStore(): Store {
  const kv = new Map<string, unknown>();
  const box = new Map<string, OutboxEntry>();
  const clone = <T>(v: T): T => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
  return {
    get: async (k) => clone(kv.get(k)) as never,
    set: async (k, v) => void kv.set(k, clone(v)),
    outbox: async (scope) => {
      const [lo, hi] = scopeRange(scope);
      return [...box.values()].filter((e) => e.key > lo && e.key < hi).sort((a, b) => (a.key < b.key ? -1 : 1)).map(clone);
    },
    put: async (e) => void box.set(e.key, clone(e)),
    remove: async (k) => void box.delete(k),
  };
}

/** IndexedDB store `switchyard` (object stores `kv` and `outbox`). */
export async function indexedDbStore(name = 'switchyard'): Promise<Store> {
  const db: IDBPDatabase = await openDB(name, 1, {
    upgrade(d) {
      d.createObjectStore('kv');
      d.createObjectStore('outbox', { keyPath: 'key' });
    },
  });
  return {
    get: (k) => db.get('kv', k),
    set: async (k, v) => void (await db.put('kv', v, k)),
    outbox: (scope) => {
      const [lo, hi] = scopeRange(scope);
      return db.getAll('outbox', IDBKeyRange.bound(lo, hi, true, true));
    },
    put: async (e) => void (await db.put('outbox', e)),
    remove: (k) => db.delete('outbox', k),
  };
}

/** IndexedDB when the environment has it and it opens; memory otherwise. */
export async function autoStore(): Promise<Store> {
  if (typeof indexedDB !== 'undefined') {
    try {
      return await indexedDbStore();
    } catch {
      // e.g. Firefox private mode: fall back to memory
    }
  }
  return memoryStore();
}
