import { describe, expect, it } from 'vitest';
import { PresenceState, TypingState } from '../src/presence';

describe('presence', () => {
  it('company presence: list, then user:online / user:offline', () => {
    const p = new PresenceState('company');
    p.list([{ userId: 'b', connections: 1 }, { userId: 'a', connections: 2 }]);
    expect(p.snapshot().map((u) => u.userId)).toEqual(['a', 'b']);
    expect(p.apply('user:online', { userId: 'c', role: 'operator', at: 1 })).toBe(true);
    expect(p.apply('user:offline', { userId: 'a', at: 2, duration: 1 })).toBe(true);
    expect(p.apply('user:offline', { userId: 'zz', at: 2, duration: 1 })).toBe(false);
    expect(p.apply('presence:joined', { room: 'machine:m1', userId: 'x' })).toBe(false);
    expect(p.snapshot().map((u) => u.userId)).toEqual(['b', 'c']);
  });

  it('entity-room presence follows presence:joined / presence:left of that room only', () => {
    const p = new PresenceState('machine:m1');
    expect(p.apply('presence:joined', { room: 'machine:m2', userId: 'x', role: 'operator', at: 1 })).toBe(false);
    expect(p.apply('presence:joined', { room: 'machine:m1', userId: 'x', role: 'operator', at: 1 })).toBe(true);
    expect(p.apply('user:online', { userId: 'y', role: 'operator', at: 1 })).toBe(false);
    expect(p.snapshot().map((u) => u.userId)).toEqual(['x']);
    expect(p.apply('presence:left', { room: 'machine:m1', userId: 'x', at: 2 })).toBe(true);
    expect(p.snapshot()).toEqual([]);
  });

  it('typing: set, clear, and expiry when not renewed', () => {
    const t = new TypingState(6000);
    expect(t.set('u2', true, 0)).toBe(true);
    expect(t.set('u2', true, 1000)).toBe(false); // renewal, no change
    expect(t.snapshot()).toEqual(['u2']);
    expect(t.expire(6999)).toBe(false);
    expect(t.expire(7000)).toBe(true);
    expect(t.snapshot()).toEqual([]);
    t.set('u3', true, 0);
    expect(t.set('u3', false, 1)).toBe(true);
    expect(t.snapshot()).toEqual([]);
  });
});
