/** What a lane batches: the distinct keys asked of one run, and whoever waits for their answer. */
export interface LaneBatch<W> {
  keys: Set<string>;
  waiters: W[];
}

/**
 * Micro-batches of keys by run: the batch still open per run, and the full ones waiting in
 * order. Keys asked of a run join its open batch until it would pass `maxKeys`; then that batch
 * waits in line and a new one opens. Shared by the stored lookups (src/api/lookup.ts) and
 * compute on miss (src/api/miss.ts).
 */
export class Lane<W, B extends LaneBatch<W>> {
  private readonly open = new Map<string, B>();
  private readonly full: B[] = [];
  /** Queries of this lane in flight (counted by the caller). */
  inFlight = 0;

  /** Adds `keys` and `waiter` to the open batch of `runId`, or to a new one from `create`; returns that batch. */
  add(runId: string, keys: readonly string[], waiter: W, maxKeys: number, create: () => B): B {
    let batch = this.open.get(runId);
    if (batch && batch.keys.size + keys.length > maxKeys) {
      this.open.delete(runId);
      this.full.push(batch);
      batch = undefined;
    }
    if (!batch) {
      batch = create();
      this.open.set(runId, batch);
    }
    for (const k of keys) batch.keys.add(k);
    batch.waiters.push(waiter);
    return batch;
  }

  /** The next batch to send: the oldest full one, else the oldest open one. */
  take(): B | undefined {
    const batch = this.full.shift();
    if (batch) return batch;
    const first = this.open.entries().next();
    if (first.done) return undefined;
    this.open.delete(first.value[0]);
    return first.value[1];
  }

  /** Removes and returns the batches `which` selects: full ones in line order, then open ones. */
  remove(which: (batch: B) => boolean): B[] {
    const out: B[] = [];
    for (let i = 0; i < this.full.length;) {
      if (which(this.full[i]!)) out.push(...this.full.splice(i, 1));
      else i++;
    }
    for (const [runId, b] of this.open) {
      if (which(b)) {
        this.open.delete(runId);
        out.push(b);
      }
    }
    return out;
  }

  get waiting(): boolean {
    return this.full.length > 0 || this.open.size > 0;
  }
}
