import type { ColumnDrift, DriftReport } from '../profile/drift.js';
import { describeBreach, round, type Breach } from '../profile/gates.js';
import type { StoredReport } from '../db/sql/profiles.js';

const BAR = 24;

function pct(v: number | null): string {
  return v === null ? '-' : `${(v * 100).toFixed(1)}%`;
}

function num(v: number | null): string {
  return v === null || !Number.isFinite(v) ? '-' : round(v);
}

/** A small terminal histogram: baseline and run shares of each bin, side by side. */
function histogram(c: ColumnDrift): string[] {
  if (!c.bins) return [];
  const { edges, baseline, run } = c.bins;
  const bt = baseline.reduce((a, b) => a + b, 0) || 1;
  const rt = run.reduce((a, b) => a + b, 0) || 1;
  const top = Math.max(...baseline.map((b) => b / bt), ...run.map((r) => r / rt), 1e-9);
  const bar = (share: number) => '█'.repeat(Math.round((share / top) * BAR)).padEnd(BAR);
  return baseline.map((b, i) => {
    const from =
      i === 0
        ? `< ${num(edges[0]!)}`
        : i === baseline.length - 1
          ? `>= ${num(edges[edges.length - 1]!)}`
          : `>= ${num(edges[i - 1]!)}`;
    return `    ${from.padStart(12)}  base ${bar(b / bt)} ${pct(b / bt).padStart(6)}   run ${bar(run[i]! / rt)} ${pct(run[i]! / rt).padStart(6)}`;
  });
}

/** `prescore runs report`: per column, baseline vs run, PSI, JS, flagged; histograms of the flagged ones. */
export function renderReport(runId: string, stored: StoredReport<DriftReport, Breach>): string {
  const { report, breaches, baseline } = stored;
  const flagged = new Set(breaches.map((b) => b.column).filter((c): c is string => c !== null));
  const lines: string[] = [];
  const against =
    baseline.ref === null
      ? 'no baseline yet (first run of the job)'
      : `${baseline.kind === 'profile' ? 'profile' : 'run'} ${baseline.ref}`;
  lines.push(`run ${runId}: drift against ${against}`);
  const rc = report.rows.change;
  lines.push(
    `rows: ${report.rows.run.toLocaleString('en-US')} (previous run ${report.rows.baseline ? report.rows.baseline.toLocaleString('en-US') : '-'}${rc === null ? '' : `, ${rc >= 0 ? '+' : ''}${(rc * 100).toFixed(1)}%`})`,
  );
  lines.push(breaches.length ? `gates: ${breaches.map(describeBreach).join('; ')}` : 'gates: none broken');
  lines.push('');
  const cols = [...report.columns].sort((a, b) => Number(flagged.has(b.column)) - Number(flagged.has(a.column)));
  const header = ['COLUMN', 'KIND', 'BASE MEAN', 'RUN MEAN', 'BASE SD', 'RUN SD', 'BASE NULL', 'RUN NULL', 'PSI', 'JS', 'FLAG'];
  const rows = cols.map((c) => [
    c.column,
    c.kind,
    num(c.baseline.mean),
    num(c.run.mean),
    num(c.baseline.stddev),
    num(c.run.stddev),
    pct(c.baseline.nullRate),
    pct(c.run.nullRate),
    c.kind === 'label' ? `L∞ ${num(c.classShift)}` : num(c.psi),
    num(c.js),
    flagged.has(c.column) ? 'FLAGGED' : '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows])
    lines.push(
      r
        .map((v, i) => v.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  if (report.unmatched.length) lines.push('', `not in both the run and its baseline: ${report.unmatched.join(', ')}`);
  for (const c of cols.filter((x) => flagged.has(x.column) && x.bins)) {
    lines.push('', `  ${c.column}: PSI ${num(c.psi)}, JS ${num(c.js)}, mean ${num(c.baseline.mean)} -> ${num(c.run.mean)}`);
    lines.push(...histogram(c));
  }
  return lines.join('\n');
}
