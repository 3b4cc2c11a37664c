import { HttpError } from '../errors.js';

interface Waiter {
  weight: number;
  queued: number;
  start(): void;
}

/**
 * Admission of batch requests by their number of keys: at most `budget` keys are worked on at
 * once (a request bigger than the budget runs alone), the others wait in arrival order. A
 * batch costs the event loop in proportion to its keys (rows to parse, JSON to write), so the
 * budget bounds how long a single GET can wait behind batches, whatever their mix of sizes.
 * Waiting is bounded too: in keys (beyond `maxQueuedKeys`, 503 at once) and in time (a request
 * that waited `timeoutMs` gets 503 when its turn comes instead of starting late work).
 */
export class Admission {
  private inUse = 0;
  private queuedKeys = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    private readonly budget: number,
    private readonly maxQueuedKeys: number,
    private readonly timeoutMs: number,
  ) {}

  async run<T>(weight: number, work: () => Promise<T>): Promise<T> {
    if (this.queuedKeys + weight > this.maxQueuedKeys) {
      throw new HttpError(503, 'too many lookups are waiting for the database; retry later');
    }
    const queued = Date.now();
    if (!this.fits(weight) || this.waiting.length > 0) {
      this.queuedKeys += weight;
      try {
        await new Promise<void>((start) => this.waiting.push({ weight, queued, start }));
      } finally {
        this.queuedKeys -= weight;
      }
    } else {
      this.inUse += weight;
    }
    try {
      if (Date.now() - queued > this.timeoutMs) throw new HttpError(503, 'the database is unavailable; retry later');
      return await work();
    } finally {
      this.inUse -= weight;
      this.next();
    }
  }

  private fits(weight: number): boolean {
    return this.inUse === 0 || this.inUse + weight <= this.budget;
  }

  private next(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.weight)) {
      const w = this.waiting.shift()!;
      this.inUse += w.weight;
      w.start();
    }
  }
}
