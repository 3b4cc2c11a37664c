import { Counter, Histogram, type Registry } from 'prom-client';
import type { LateOutcome } from '../db/sql/late.js';

export type ChunkOutcome = 'done' | 'skipped' | 'failed' | 'retried';

/**
 * What a queue worker counts as it works: chunks by outcome, rows scored and rejected (per
 * chunk, never per row) and inference latency per batch. Label children are cached, so a
 * chunk or a batch costs a Map lookup and an add.
 */
export class WorkerMetrics {
  private readonly chunks: Counter<'prescore_job' | 'outcome'>;
  private readonly scored: Counter<'prescore_job'>;
  private readonly rejected: Counter<'prescore_job'>;
  private readonly inference: Histogram<'model' | 'model_version'>;
  private readonly lateScored: Counter<'prescore_job' | 'outcome'>;
  private readonly children = new Map<string, Counter.Internal>();
  private readonly models = new Map<string, Histogram.Internal<'model' | 'model_version'>>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.chunks = new Counter({
      name: 'prescore_chunks_total',
      help: 'chunks this worker finished, by job and outcome (done, skipped: already done, retried, failed: the run failed)',
      labelNames: ['prescore_job', 'outcome'],
      registers,
    });
    this.scored = new Counter({
      name: 'prescore_rows_scored_total',
      help: 'rows scored and written by this worker, by job',
      labelNames: ['prescore_job'],
      registers,
    });
    this.rejected = new Counter({
      name: 'prescore_rows_rejected_total',
      help: 'rows this worker rejected (stored with a reason instead of a prediction), by job',
      labelNames: ['prescore_job'],
      registers,
    });
    this.lateScored = new Counter({
      name: 'prescore_late_scored_total',
      help: 'late keys (serving.onMiss enqueue) this worker handled, by job and outcome (scored, rejected, absent: no source row, skipped: answered already, gone: the run no longer serves)',
      labelNames: ['prescore_job', 'outcome'],
      registers,
    });
    this.inference = new Histogram({
      name: 'prescore_inference_duration_seconds',
      help: 'inference latency of one batch (queued for and run in an inference thread), by model and version',
      labelNames: ['model', 'model_version'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
  }

  private child(
    counter: Counter<'prescore_job'> | Counter<'prescore_job' | 'outcome'>,
    key: string,
    labels: Record<string, string>,
  ) {
    let c = this.children.get(key);
    if (!c) {
      c = (counter as Counter<string>).labels(labels);
      this.children.set(key, c);
    }
    return c;
  }

  chunk(job: string, outcome: ChunkOutcome, rows: { written: number; rejected: number } = { written: 0, rejected: 0 }): void {
    this.child(this.chunks, `c ${job} ${outcome}`, { prescore_job: job, outcome }).inc();
    if (rows.written > 0) this.child(this.scored, `s ${job}`, { prescore_job: job }).inc(rows.written);
    if (rows.rejected > 0) this.child(this.rejected, `r ${job}`, { prescore_job: job }).inc(rows.rejected);
  }

  late(job: string, outcome: LateOutcome): void {
    this.child(this.lateScored, `l ${job} ${outcome}`, { prescore_job: job, outcome }).inc();
  }

  /** Names a model's sha256 (what the inference threads know it by) for the latency labels. */
  model(sha256: string, name: string, version: number): void {
    if (!this.models.has(sha256)) this.models.set(sha256, this.inference.labels({ model: name, model_version: String(version) }));
  }

  inferred(sha256: string, seconds: number): void {
    this.models.get(sha256)?.observe(seconds);
  }
}
