// The durable outbox: publishes of durable types (with `clientEventId`) and
// document updates (with `clientMutationId`) are stored before they are sent,
// sent one at a time in creation order, and removed when the server answers.
// Retried (same idempotency key, so never applied twice) on UNAVAILABLE,
// RATE_LIMITED and timeouts; dropped and reported on any other refusal.

import type { Ack, SwitchyardErrorBody } from './types';
import type { OutboxEntry, Store } from './storage';

/** OFFLINE: the connection went away before the entry could be sent. */
export const RETRY_CODES = ['UNAVAILABLE', 'RATE_LIMITED', 'TIMEOUT', 'OFFLINE'];

export type Verdict = 'done' | 'retry' | 'drop';

/** What to do with an entry after the server's answer. */
export function verdict(ack: Ack<unknown>): Verdict {
  if (ack.ok) return 'done';
  return RETRY_CODES.includes(ack.error.code) ? 'retry' : 'drop';
}

/** Delay before retry number `attempts` (1-based): 0.5 s doubling, at most 30 s. */
export const retryDelay = (attempts: number): number => Math.min(30000, 500 * 2 ** Math.max(0, attempts - 1));

let counter = 0;
/** An entry key that sorts after every key made before it, in any tab. */
export function entryKey(scope: string, now = Date.now()): string {
  counter = (counter + 1) % 1e6;
  return `${scope}\u0000${now.toString(36).padStart(10, '0')}.${counter.toString(36).padStart(4, '0')}.${randomId(4)}`;
}

export function randomId(bytes = 16): string {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

export interface OutboxHooks {
  /** Sends one entry and resolves with the server's ack (TIMEOUT on no answer). */
  send(event: OutboxEntry['event'], body: Record<string, unknown>): Promise<Ack<Record<string, unknown>>>;
  /** Whether sending makes sense now (connected, `session` received). */
  canSend(): boolean;
  /** The entry left the outbox: delivered (`done`) or refused (`drop`). */
  settled(entry: OutboxEntry, ack: Ack<Record<string, unknown>>, verdict: 'done' | 'drop'): void;
  /** The number of entries waiting changed. */
  counted(n: number): void;
}

/** Runs `fn` while holding an exclusive cross-tab lock where the browser has one. */
function withLock(name: string, fn: () => Promise<void>): Promise<void> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  return locks ? locks.request(name, fn).then(() => undefined) : fn();
}

/**
 * Document updates queued behind one another were made on the local view that
 * already contained the earlier ones; when an earlier one was applied cleanly
 * (version + 1), the later ones are sent on the version it produced, so a
 * user's own queued edits never conflict with each other.
 */
export class Rebaser {
  private chains = new Map<string, { from: number; to: number }>();

  /** The baseVersion to send for `body` (a document:update). */
  base(body: Record<string, unknown>): number {
    const c = this.chains.get(docKey(body));
    const b = body.baseVersion as number;
    return c && c.from === b ? c.to : b;
  }

  /** Records the result of sending `body` with `sentBase`. */
  record(body: Record<string, unknown>, sentBase: number, ack: Ack<Record<string, unknown>>): void {
    const k = docKey(body);
    if (ack.ok && ack.status === 'applied' && ack.version === sentBase + 1) {
      this.chains.set(k, { from: body.baseVersion as number, to: ack.version as number });
    } else if (ack.ok) {
      this.chains.delete(k);
    }
  }
}

export const docKey = (b: Record<string, unknown>): string => `${b.type}:${b.id}`;

export class Outbox {
  private current: Promise<void> | null = null;
  private again = false;
  private blocked = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private rebaser = new Rebaser();

  constructor(
    private store: Store,
    readonly scope: string,
    private hooks: OutboxHooks,
  ) {}

  /** A new entry (not stored yet): its key orders it after every earlier one. */
  entry(event: OutboxEntry['event'], body: Record<string, unknown>): OutboxEntry {
    return { key: entryKey(this.scope), event, body, createdAt: Date.now(), attempts: 0 };
  }

  /** Stores an entry, then tries to send. */
  async add(entry: OutboxEntry): Promise<void> {
    await this.store.put(entry);
    await this.count();
    void this.flush();
  }

  entries(): Promise<OutboxEntry[]> {
    return this.store.outbox(this.scope);
  }

  async count(): Promise<number> {
    const n = (await this.entries()).length;
    this.hooks.counted(n);
    return n;
  }

  /**
   * Sends every stored entry in order until one must wait (retry) or the
   * connection is gone. A call during a running flush makes it go over the
   * entries once more, and resolves when that pass is done.
   */
  flush(): Promise<void> {
    if (this.current) {
      this.again = true;
      return this.current;
    }
    clearTimeout(this.retryTimer);
    this.blocked = false;
    this.current = (async () => {
      try {
        do {
          this.again = false;
          await withLock(`switchyard-outbox:${this.scope}`, () => this.drain());
        } while (this.again && !this.blocked);
      } finally {
        // Same synchronous step as the last check of `again`: no call is lost in between.
        this.current = null;
      }
      await this.count();
    })();
    return this.current;
  }

  private async drain(): Promise<void> {
    for (const entry of await this.entries()) {
      if (!this.hooks.canSend()) return;
      if (!(await this.sendOne(entry))) {
        this.blocked = true;
        return;
      }
    }
  }

  /** False when the entry must be retried later (and the flush stops, to keep the order). */
  private async sendOne(entry: OutboxEntry): Promise<boolean> {
    let body = entry.body;
    const doc = entry.event === 'document:update';
    if (doc) body = { ...body, baseVersion: this.rebaser.base(body) };
    const ack = await this.hooks.send(entry.event, body);
    const v = verdict(ack);
    if (v === 'retry') {
      entry.attempts++;
      await this.store.put(entry);
      this.retryTimer = setTimeout(() => void this.flush(), retryDelay(entry.attempts));
      return false;
    }
    if (doc) this.rebaser.record(entry.body, body.baseVersion as number, ack);
    await this.store.remove(entry.key);
    // Counted before the publish settles: whoever awaited it sees `pending` without it.
    await this.count();
    this.hooks.settled(entry, ack, v);
    return true;
  }

  stop(): void {
    clearTimeout(this.retryTimer);
  }
}

export class SwitchyardError extends Error {
  readonly code: string;
  readonly details?: unknown;
  constructor(body: SwitchyardErrorBody) {
    super(`${body.code}: ${body.message}`);
    this.name = 'SwitchyardError';
    this.code = body.code;
    this.details = body.details;
  }
}
