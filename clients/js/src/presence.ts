// Presence of a room (pure): the `presence:list` answer kept current by the
// live signals — `user:online`/`user:offline` for `company`, and
// `presence:joined`/`presence:left` for entity rooms.

import type { PresenceUser, ServerEvents } from './types';

export class PresenceState {
  private users = new Map<string, PresenceUser>();
  private view: PresenceUser[] = [];

  constructor(readonly room: string) {}

  snapshot(): PresenceUser[] {
    return this.view;
  }

  list(users: PresenceUser[]): void {
    this.users = new Map(users.map((u) => [u.userId, u]));
    this.changed();
  }

  /** Applies a live signal; false when it was not about this room. */
  apply(event: string, p: Record<string, unknown>): boolean {
    const company = this.room === 'company';
    if (company ? event === 'user:online' : event === 'presence:joined' && p.room === this.room) {
      const e = p as ServerEvents['user:online'];
      if (!this.users.has(e.userId)) this.users.set(e.userId, { userId: e.userId, role: e.role, connections: 1, since: e.at });
    } else if (company ? event === 'user:offline' : event === 'presence:left' && p.room === this.room) {
      if (!this.users.delete((p as { userId: string }).userId)) return false;
    } else {
      return false;
    }
    this.changed();
    return true;
  }

  private changed(): void {
    this.view = [...this.users.values()].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
  }
}

/** Who is typing in a room; a state not renewed within `ttlMs` ends (the server's is 5 s). */
export class TypingState {
  private until = new Map<string, number>();
  private view: string[] = [];

  constructor(private ttlMs = 6000) {}

  snapshot(): string[] {
    return this.view;
  }

  /** Returns true when the set of typing users changed. */
  set(userId: string, isTyping: boolean, now = Date.now()): boolean {
    const had = this.until.has(userId);
    if (isTyping) this.until.set(userId, now + this.ttlMs);
    else this.until.delete(userId);
    return had !== isTyping && this.changed();
  }

  /** Drops expired states; true when something changed. */
  expire(now = Date.now()): boolean {
    let changed = false;
    for (const [u, t] of this.until) if (t <= now) changed = this.until.delete(u);
    return changed && this.changed();
  }

  private changed(): true {
    this.view = [...this.until.keys()].sort();
    return true;
  }
}
