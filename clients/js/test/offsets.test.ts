import { describe, expect, it } from 'vitest';
import { OffsetBook, automaticRooms } from '../src/offsets';

describe('OffsetBook', () => {
  it('accepts each (room, offset) once and drops replays of it', () => {
    const b = new OffsetBook();
    expect(b.accept('company', 1)).toBe(true);
    expect(b.accept('company', 2)).toBe(true);
    expect(b.accept('company', 2)).toBe(false);
    expect(b.accept('company', 1)).toBe(false);
    expect(b.accept('order:1', 1)).toBe(true); // rooms are independent
    expect(b.snapshot()).toEqual({ company: 2, 'order:1': 1 });
  });

  it('loads stored offsets without moving a room backwards and ignores garbage', () => {
    const b = new OffsetBook({ company: 10 });
    b.load({ company: 4, 'user:u1': 3, bad: -1, worse: 1.5 } as never);
    expect(b.snapshot()).toEqual({ company: 10, 'user:u1': 3 });
    expect(b.accept('company', 10)).toBe(false);
    expect(b.accept('company', 11)).toBe(true);
  });

  it('picks the offsets of the named rooms only', () => {
    const b = new OffsetBook({ company: 5, 'role:operator': 2, 'order:9': 7 });
    expect(b.pick(['company', 'order:9', 'machine:m1'])).toEqual({ company: 5, 'order:9': 7 });
  });

  it('batches acknowledgements: one per room with the highest offset, then nothing until new events', () => {
    const b = new OffsetBook();
    for (let i = 1; i <= 50; i++) b.accept('company', i);
    b.accept('user:u1', 3);
    b.accept('order:1', 8);
    const auto = new Set(automaticRooms('u1', 'operator'));
    expect(b.takeAcks((r) => auto.has(r))).toEqual([{ room: 'company', offset: 50 }, { room: 'user:u1', offset: 3 }]);
    expect(b.takeAcks()).toEqual([]);
    b.accept('company', 50); // duplicate: nothing new to acknowledge
    expect(b.takeAcks()).toEqual([]);
  });
});
