import { describe, expect, it } from 'vitest';
import { DocState, overlay } from '../src/document';

const upd = (version: number, changes: Record<string, unknown>) => ({ type: 'shift', id: 's1', version, changes, updatedBy: 'u2', updatedAt: '' });

describe('document overlay', () => {
  it('null deletes a field, other values replace it', () => {
    expect(overlay({ a: 1, b: 2 }, { b: null, c: 3 })).toEqual({ a: 1, c: 3 });
  });

  it('pending local changes are applied over the server version, in order, until settled', () => {
    const d = new DocState();
    expect(d.snapshot().status).toBe('loading');
    d.server({ version: 3, data: { notes: 'a', target: 10 } });
    d.addPending('k1', { notes: 'b' });
    d.addPending('k2', { notes: 'c', target: null });
    expect(d.snapshot()).toMatchObject({ data: { notes: 'c' }, version: 3, pending: 2, status: 'ready' });
    // Someone else writes target meanwhile: still under our pending changes.
    expect(d.updated(upd(4, { target: 12, owner: 'x' }))).toBe('applied');
    expect(d.snapshot().data).toEqual({ notes: 'c', owner: 'x' });
    d.settle('k1', { version: 5, data: { notes: 'b', target: 12, owner: 'x' } });
    expect(d.snapshot()).toMatchObject({ data: { notes: 'c', owner: 'x' }, version: 5, pending: 1 });
    d.settle('k2', { version: 6, data: { notes: 'c', owner: 'x' } });
    expect(d.snapshot()).toMatchObject({ data: { notes: 'c', owner: 'x' }, version: 6, pending: 0 });
  });

  it('a merged ack replaces the local view with the server result (the loser sees the winner value)', () => {
    const d = new DocState();
    d.server({ version: 1, data: { notes: 'base' } });
    d.addPending('mine', { notes: 'mine' });
    expect(d.snapshot().data.notes).toBe('mine');
    d.settle('mine', { version: 2, data: { notes: 'theirs' } });
    expect(d.snapshot().data.notes).toBe('theirs');
    d.conflict({ type: 'shift', id: 's1', strategy: 'last-write-wins', conflictedFields: ['notes'], originalValue: {}, incomingValue: {}, resolvedValue: {}, version: 2 });
    expect(d.snapshot().conflicts).toHaveLength(1);
    d.clearConflicts();
    expect(d.snapshot().conflicts).toHaveLength(0);
  });

  it('applies document:updated in version order, holds later ones, ignores older ones, reports a gap', () => {
    const d = new DocState();
    d.server({ version: 1, data: {} });
    expect(d.updated(upd(3, { c: 3 }))).toBe('gap');
    expect(d.snapshot().version).toBe(1);
    expect(d.updated(upd(2, { b: 2 }))).toBe('applied');
    expect(d.snapshot()).toMatchObject({ version: 3, data: { b: 2, c: 3 } });
    expect(d.updated(upd(2, { b: 'old' }))).toBe('ignored');
    // A gap that a document:get fills: held versions at or below it are dropped.
    expect(d.updated(upd(6, { f: 6 }))).toBe('gap');
    d.server({ version: 5, data: { b: 2, c: 3, e: 5 } });
    expect(d.snapshot()).toMatchObject({ version: 6, data: { b: 2, c: 3, e: 5, f: 6 } });
  });

  it('an older whole document (a late ack) does not move the view back', () => {
    const d = new DocState();
    d.server({ version: 7, data: { a: 7 } });
    expect(d.server({ version: 6, data: { a: 6 } })).toBe(false);
    expect(d.snapshot()).toMatchObject({ version: 7, data: { a: 7 } });
  });

  it('snapshots are immutable and only change identity when something changed', () => {
    const d = new DocState();
    d.server({ version: 1, data: { a: 1 } });
    const s1 = d.snapshot();
    expect(d.snapshot()).toBe(s1);
    d.updated(upd(1, { a: 2 }));
    expect(d.snapshot()).toBe(s1);
    d.addPending('k', { a: 3 });
    expect(d.snapshot()).not.toBe(s1);
    expect(s1.data).toEqual({ a: 1 });
  });
});
