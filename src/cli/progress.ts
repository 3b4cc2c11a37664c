import cliProgress from 'cli-progress';
import type { Progress } from '../runs/local.js';
import { formatCount } from './context.js';

/** A progress bar on stderr when it is a terminal (rows, rows/s, ETA); nothing otherwise. */
/** What the bar shows: a run's Progress in this process, or a RunInfo followed in the database. */
type Counts = Pick<Progress, 'rowsPlanned' | 'rowsRead' | 'chunks' | 'chunksDone'>;

export function progressBar(label: string): { update(p: Counts): void; stop(): void } {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {rows} rows | {rate} rows/s | chunks {chunks} | ETA {eta_formatted}`,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  let startRows: number | null = null;
  let begun = false;
  return {
    update(p) {
      const total = Math.max(p.rowsPlanned, p.rowsRead, 1);
      startRows ??= p.rowsRead;
      const secs = (Date.now() - started) / 1000;
      const payload = {
        rows: `${formatCount(p.rowsRead)}/${formatCount(p.rowsPlanned)}`,
        rate: secs > 0 ? formatCount(Math.round((p.rowsRead - startRows) / secs)) : '-',
        chunks: `${p.chunksDone}/${p.chunks}`,
      };
      if (!begun) {
        bar.start(total, p.rowsRead, payload);
        begun = true;
      } else {
        bar.setTotal(total);
        bar.update(p.rowsRead, payload);
      }
    },
    stop() {
      if (begun) bar.stop();
    },
  };
}
