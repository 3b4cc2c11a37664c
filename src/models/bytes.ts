import type { Pool } from '../db/pool.js';
import { sharedBytes } from '../inference/pool.js';
import { loadModelBytes } from './registry.js';

/** Model versions whose bytes a process keeps at most: a few versions of a few jobs. */
const MAX_MODELS = 16;

/**
 * The ONNX bytes of model versions, read from the registry once per process and kept by sha256
 * in shared memory (every inference thread reads the same copy). Callers asking together share
 * one read; a failed read is forgotten, so the next ask tries again. The oldest version read
 * goes first past `max`: sessions of it in the threads stay, the bytes do not.
 */
export class ModelBytes {
  private readonly bytes = new Map<string, Promise<Uint8Array>>();

  constructor(
    private readonly pool: Pool,
    private readonly max = MAX_MODELS,
  ) {}

  get(m: { name: string; version: number; sha256: string }): Promise<Uint8Array> {
    let b = this.bytes.get(m.sha256);
    if (!b) {
      b = loadModelBytes(this.pool, m.name, m.version).then(sharedBytes);
      b.catch(() => this.bytes.delete(m.sha256));
      this.bytes.set(m.sha256, b);
      if (this.bytes.size > this.max) this.bytes.delete(this.bytes.keys().next().value!);
    }
    return b;
  }
}
