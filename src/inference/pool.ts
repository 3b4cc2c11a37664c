import os from 'node:os';
import { Piscina } from 'piscina';
import type { InferResult, InferTask } from './protocol.js';

/**
 * Inference runs in worker threads: onnxruntime-node's run() holds its calling thread for
 * the whole batch, which would starve the event loop (queue lock renewal, HTTP, COPY I/O).
 * Each thread gets cores / threads intra-op threads so the pool never oversubscribes.
 */
export class InferencePool {
  private readonly piscina: Piscina;
  readonly intraOpThreads: number;
  private closed = false;

  /** `onBatch`: told each batch's latency (queued for and run in a thread), e.g. for metrics. */
  constructor(
    threads: number,
    private readonly onBatch?: (sha256: string, seconds: number) => void,
  ) {
    const cores = Math.max(1, os.availableParallelism());
    this.intraOpThreads = Math.max(1, Math.floor(cores / threads));
    this.piscina = new Piscina({
      filename: new URL('./worker.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
    });
  }

  /** Scores a batch; its feature buffer is transferred to the thread (unusable here afterwards). */
  run(task: Omit<InferTask, 'intraOpThreads'>): Promise<InferResult> {
    return this.submit<InferResult>(task, 'default');
  }

  /** The same, with the thread's own time on the batch (ms), not counting its wait in the queue. */
  runTimed(task: Omit<InferTask, 'intraOpThreads'>): Promise<{ result: InferResult; ms: number }> {
    return this.submit<{ result: InferResult; ms: number }>(task, 'inferTimed');
  }

  private submit<T>(task: Omit<InferTask, 'intraOpThreads'>, name: string): Promise<T> {
    const full: InferTask = { ...task, intraOpThreads: this.intraOpThreads };
    const transfer = task.features.byteOffset === 0 && task.features.buffer instanceof ArrayBuffer ? [task.features.buffer] : [];
    const onBatch = this.onBatch;
    const started = onBatch ? performance.now() : 0;
    const result = this.piscina.run(full, { transferList: transfer, name }) as Promise<T>;
    if (!onBatch) return result;
    return result.then((r) => {
      onBatch(task.sha256, (performance.now() - started) / 1000);
      return r;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.piscina.destroy();
  }
}

/** Copies model bytes into shared memory so every inference thread reads the same copy. */
export function sharedBytes(bytes: Uint8Array): Uint8Array {
  const shared = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  shared.set(bytes);
  return shared;
}
