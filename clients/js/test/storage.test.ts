import { describe, expect, it } from 'vitest';
import { autoStore, memoryStore } from '../src/storage';

describe('storage', () => {
  it('falls back to memory where there is no IndexedDB (Node)', async () => {
    expect(typeof indexedDB).toBe('undefined');
    const s = await autoStore();
    await s.set('offsets:acme/u1/d1', { company: 3 });
    expect(await s.get('offsets:acme/u1/d1')).toEqual({ company: 3 });
  });

  it('the memory store hands out copies, like IndexedDB', async () => {
    const s = memoryStore();
    const v = { company: 1 };
    await s.set('k', v);
    v.company = 2;
    expect(await s.get('k')).toEqual({ company: 1 });
  });
});
