// Offset bookkeeping (pure): the highest durable offset processed per room,
// de-duplication on (room, offset), and which rooms have offsets to acknowledge.
//
// The server delivers each room in offset order (docs/protocol.md), so "at or
// below the highest seen" is exactly "already delivered".

export type Offsets = Record<string, number>;

export class OffsetBook {
  private high = new Map<string, number>();
  private unacked = new Set<string>();
  /** Bumped on every change, so a persister can tell whether to write. */
  rev = 0;

  constructor(initial: Offsets = {}) {
    this.load(initial);
  }

  /** Merges stored offsets (never moves a room backwards). */
  load(offsets: Offsets): void {
    for (const [room, off] of Object.entries(offsets)) {
      if (Number.isSafeInteger(off) && off >= 0 && off > (this.high.get(room) ?? -1)) this.high.set(room, off);
    }
  }

  /** True when (room, offset) is new, and records it; false for a duplicate. */
  accept(room: string, offset: number): boolean {
    if (offset <= (this.high.get(room) ?? -1)) return false;
    this.high.set(room, offset);
    this.unacked.add(room);
    this.rev++;
    return true;
  }

  get(room: string): number | undefined {
    return this.high.get(room);
  }

  /** Offsets of the given rooms that have one. */
  pick(rooms: Iterable<string>): Offsets {
    const out: Offsets = {};
    for (const r of rooms) {
      const o = this.high.get(r);
      if (o !== undefined) out[r] = o;
    }
    return out;
  }

  /** Rooms with offsets not yet acknowledged, filtered by `want`; clears them. */
  takeAcks(want: (room: string) => boolean = () => true): Array<{ room: string; offset: number }> {
    const out: Array<{ room: string; offset: number }> = [];
    for (const room of this.unacked) {
      if (want(room)) out.push({ room, offset: this.high.get(room) as number });
    }
    this.unacked.clear();
    return out;
  }

  snapshot(): Offsets {
    return Object.fromEntries(this.high);
  }
}

/** The automatic rooms of a user (SPEC §3): the only rooms whose cursor the server stores. */
export function automaticRooms(userId: string, role: string): string[] {
  return ['company', `user:${userId}`, `role:${role}`];
}
