/** A run's drift report: the gates it broke and one card per feature and output, flagged first. */
import type { Breach } from '../../profile/gates.js';
import type { ColumnDrift } from '../../profile/drift.js';
import type { ReportBody } from './api.js';
import { h } from './dom.js';
import { count, num, pct } from './format.js';
import { histogram } from './histogram.js';
import { badge, describe, gateTable } from './tables.js';

function baselineText(b: ReportBody['baseline']): string {
  if (b.ref === null) return 'no baseline yet (the job’s first run): nothing to compare';
  if (b.kind === 'profile') return `the named profile ${b.ref}`;
  if (b.kind === 'run') return `run ${b.ref} (pinned)`;
  return `run ${b.ref} (the job’s previous published run)`;
}

function stat(label: string, value: string): HTMLElement {
  return h('div', { class: 'stat' }, h('dt', {}, label), h('dd', {}, value));
}

function columnCard(c: ColumnDrift, breaches: Breach[]): HTMLElement {
  const flagged = breaches.length > 0;
  const shift = c.meanShift === null ? '' : ` (${c.meanShift >= 0 ? '+' : ''}${num(c.meanShift)} sd)`;
  return h(
    'article',
    { class: flagged ? 'card flagged' : 'card', 'data-column': c.column, 'data-kind': c.kind, 'data-flagged': flagged },
    h(
      'header',
      {},
      h('h3', { class: 'name' }, c.column),
      h('span', { class: 'kind' }, c.kind),
      flagged ? h('span', { class: 'flag' }, 'FLAGGED') : null,
    ),
    flagged ? h('p', { class: 'flag-reason' }, breaches.map(describe).join('; ')) : null,
    h(
      'dl',
      { class: 'stats' },
      c.kind === 'label' ? stat('largest class change', pct(c.classShift)) : stat('PSI', num(c.psi)),
      stat('JS', num(c.js)),
      stat('mean', `${num(c.baseline.mean)} → ${num(c.run.mean)}${shift}`),
      stat('sd', `${num(c.baseline.stddev)} → ${num(c.run.stddev)}`),
      stat('null', `${pct(c.baseline.nullRate)} → ${pct(c.run.nullRate)}`),
    ),
    c.bins
      ? histogram(c.column, c.bins, flagged)
      : h(
          'p',
          { class: 'muted' },
          c.kind === 'label' ? 'A label: class shares, no histogram.' : 'No values on one side to draw.',
        ),
    c.bins
      ? h(
          'div',
          { class: 'legend' },
          h('span', { class: 'swatch baseline' }),
          `baseline (${count(c.baseline.rows)} rows)`,
          h('span', { class: flagged ? 'swatch run flagged' : 'swatch run' }),
          `run (${count(c.run.rows)} rows)`,
        )
      : null,
  );
}

/** The report's elements, for the report section; `close` is the close button's action. */
export function renderReport(body: ReportBody, close: () => void): HTMLElement[] {
  const { run, report, breaches } = body;
  const byColumn = new Map<string, Breach[]>();
  for (const b of breaches) if (b.column !== null) byColumn.set(b.column, [...(byColumn.get(b.column) ?? []), b]);
  // Flagged columns first; otherwise the report's order (features, then outputs).
  const columns = report.columns
    .map((c, i) => ({ c, i, flagged: byColumn.has(c.column) }))
    .sort((a, b) => Number(b.flagged) - Number(a.flagged) || a.i - b.i)
    .map((x) => x.c);
  const closeButton = h('button', { type: 'button', class: 'link' }, 'close');
  closeButton.addEventListener('click', close);
  const rc = report.rows.change;
  return [
    h('div', { class: 'section-head' }, h('h2', {}, `Drift report · run ${run.id}`), closeButton),
    h(
      'p',
      { class: 'meta' },
      h('span', { class: 'name' }, run.job),
      ` · ${run.date} · `,
      badge(run.status),
      ` · against ${baselineText(body.baseline)}`,
    ),
    h(
      'p',
      { class: 'meta' },
      `rows: ${count(report.rows.run)} (previous run ${report.rows.baseline ? count(report.rows.baseline) : '–'}${
        rc === null ? '' : `, ${rc >= 0 ? '+' : ''}${pct(rc)}`
      })`,
    ),
    breaches.length ? gateTable(breaches) : h('p', { class: 'ok' }, 'No gate broken.'),
    report.unmatched.length
      ? h('p', { class: 'muted' }, `Not in both the run and its baseline: ${report.unmatched.join(', ')}`)
      : h('span'),
    columns.length
      ? h('div', { class: 'cards' }, ...columns.map((c) => columnCard(c, byColumn.get(c.column) ?? [])))
      : h('p', { class: 'muted' }, 'No column to compare.'),
  ];
}
