import cliProgress from 'cli-progress';
import { routeLogLines, type LineWriter } from '../log.js';
import type { Progress } from '../runs/local.js';
import { formatCount } from './context.js';

/** What a run's bar shows: a run's Progress in this process, or a RunInfo followed in the database. */
type Counts = Pick<Progress, 'rowsPlanned' | 'rowsRead' | 'chunks' | 'chunksDone'>;

export interface RunBar {
  update(p: Counts): void;
  stop(): void;
}

const RUN_FORMAT = '{label} [{bar}] {percentage}% | {rows} rows | {rate} rows/s | chunks {chunks} | ETA {eta_formatted}';
const DATES_FORMAT = '{label} [{bar}] {value}/{total} dates | {rows} rows | {rate} rows/s | ETA {eta_formatted}';

/**
 * The bars on a terminal. `forceRedraw`: a log line written above the bars clears the bar line,
 * and cli-progress redraws a bar only when its text changed; forced, each frame draws them all.
 */
export function terminalBars(stream: NodeJS.WritableStream, format?: string): cliProgress.MultiBar {
  return new cliProgress.MultiBar(
    { stream, hideCursor: true, etaBuffer: 50, fps: 5, clearOnComplete: false, forceRedraw: true, ...(format ? { format } : {}) },
    cliProgress.Presets.shades_classic,
  );
}

/**
 * Writes lines above a MultiBar's bars: while the bars are drawn, a line is handed to the
 * MultiBar, which clears the bar line, writes it and redraws the bars (at its next frame);
 * before the first bar and after `stop()`, straight to the stream. `stop()` writes what is still
 * waiting for a frame, so no line is lost.
 */
export class LogAbove {
  private stopped = false;

  constructor(
    private readonly multi: cliProgress.MultiBar,
    private readonly stream: NodeJS.WritableStream,
  ) {}

  readonly write: LineWriter = (line) => {
    const text = line.endsWith('\n') ? line : `${line}\n`;
    if (!this.stopped && this.multi.isActive) this.multi.log(text);
    else this.stream.write(text);
  };

  /** Flushes the lines waiting for a frame, then stops the bars. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.multi.isActive) this.multi.update();
    this.multi.stop();
  }
}

/**
 * Progress bars on stderr when it is a terminal (nothing otherwise): one per run (rows, rows/s,
 * chunks, ETA), and for a backfill one more over its dates. All bars share one MultiBar, so
 * they redraw together; while they are up, log lines are written above them (LogAbove).
 */
export class ProgressBoard {
  private readonly multi: cliProgress.MultiBar | null;
  private readonly above: LogAbove | null;

  constructor() {
    this.multi = process.stderr.isTTY ? terminalBars(process.stderr) : null;
    this.above = this.multi ? new LogAbove(this.multi, process.stderr) : null;
    if (this.above) routeLogLines(this.above.write);
  }

  /** A bar for one run; it appears with its first update. */
  run(label: string): RunBar {
    const multi = this.multi;
    if (!multi) return { update: () => undefined, stop: () => undefined };
    let bar: cliProgress.SingleBar | null = null;
    const started = Date.now();
    let startRows: number | null = null;
    return {
      update(p) {
        const total = Math.max(p.rowsPlanned, p.rowsRead, 1);
        startRows ??= p.rowsRead;
        const secs = (Date.now() - started) / 1000;
        const payload = {
          label,
          rows: `${formatCount(p.rowsRead)}/${formatCount(p.rowsPlanned)}`,
          rate: secs > 0 ? formatCount(Math.round((p.rowsRead - startRows) / secs)) : '-',
          chunks: `${p.chunksDone}/${p.chunks}`,
        };
        if (!bar) bar = multi.create(total, p.rowsRead, payload, { format: RUN_FORMAT });
        else {
          bar.setTotal(total);
          bar.update(p.rowsRead, payload);
        }
      },
      stop() {
        bar?.stop();
      },
    };
  }

  /** A bar over a backfill's dates: `done(rows)` after each date, with the rows scored so far. */
  dates(label: string, total: number): { done(rows: number): void } {
    const bar = this.multi?.create(total, 0, { label, rows: '0', rate: '-' }, { format: DATES_FORMAT });
    const started = Date.now();
    return {
      done(rows) {
        const secs = Math.max(0.001, (Date.now() - started) / 1000);
        bar?.increment(1, { rows: formatCount(rows), rate: formatCount(Math.round(rows / secs)) });
      },
    };
  }

  /** Writes a line above the bars (or plainly, without a terminal). */
  log(line: string): void {
    if (this.above) this.above.write(line);
    else process.stderr.write(line.endsWith('\n') ? line : `${line}\n`);
  }

  stop(): void {
    if (!this.above) return;
    this.above.stop();
    routeLogLines(null);
  }
}

/** One run's bar, for commands that follow a single run. */
export function progressBar(label: string): RunBar {
  const board = new ProgressBoard();
  const bar = board.run(label);
  return {
    update: (p) => bar.update(p),
    stop: () => {
      bar.stop();
      board.stop();
    },
  };
}
