// Reference counting with a deferred release: the last release only takes
// effect after `delayMs`, and a retain in between cancels it. This is what
// makes React StrictMode's mount → unmount → mount cost nothing on the wire.

export class Pool<V> {
  private items = new Map<string, { value: V; count: number; timer?: ReturnType<typeof setTimeout> }>();

  constructor(
    private create: (key: string) => V,
    private dispose: (key: string, value: V) => void,
    private delayMs: () => number,
  ) {}

  /** Retains `key` (creating it on first use); returns the value and whether it was created. */
  retain(key: string): { value: V; created: boolean } {
    let item = this.items.get(key);
    const created = !item;
    if (!item) {
      item = { value: this.create(key), count: 0 };
      this.items.set(key, item);
    }
    clearTimeout(item.timer);
    item.timer = undefined;
    item.count++;
    return { value: item.value, created };
  }

  release(key: string): void {
    const item = this.items.get(key);
    if (!item || item.count === 0) return;
    if (--item.count > 0) return;
    item.timer = setTimeout(() => {
      if (item.count > 0 || this.items.get(key) !== item) return;
      this.items.delete(key);
      this.dispose(key, item.value);
    }, this.delayMs());
  }

  get(key: string): V | undefined {
    return this.items.get(key)?.value;
  }

  /** Keys that are retained now (not those waiting for their deferred release). */
  live(): string[] {
    return [...this.items].filter(([, i]) => i.count > 0).map(([k]) => k);
  }

  values(): V[] {
    return [...this.items.values()].map((i) => i.value);
  }

  get size(): number {
    return this.items.size;
  }

  clear(): void {
    for (const i of this.items.values()) clearTimeout(i.timer);
    this.items.clear();
  }
}

/** A tiny listener set. */
export class Signal<A extends unknown[] = []> {
  private fns = new Set<(...a: A) => void>();
  on(fn: (...a: A) => void): () => void {
    this.fns.add(fn);
    return () => void this.fns.delete(fn);
  }
  emit(...a: A): void {
    for (const f of [...this.fns]) {
      try {
        f(...a);
      } catch (e) {
        console.error('[switchyard] listener failed', e);
      }
    }
  }
  get size(): number {
    return this.fns.size;
  }
}
