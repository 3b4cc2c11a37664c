/** The jobs, runs and held-runs tables. `open(id)` shows a run's report. */
import type { Breach } from '../../profile/gates.js';
import type { JobRow, RunRow } from './api.js';
import { byId, fill, h } from './dom.js';
import { count, instant, num, relative, span } from './format.js';

export function badge(status: string): HTMLElement {
  return h('span', { class: `badge status-${status}`, 'data-field': 'status' }, status);
}

// ---- jobs --------------------------------------------------------------------------------

export function renderJobs(jobs: JobRow[], now: number): void {
  const rows = jobs.map((j) =>
    h(
      'tr',
      { 'data-job': j.name },
      h('td', { class: 'name' }, j.name),
      h('td', {}, j.model ?? '–'),
      h(
        'td',
        {},
        j.schedule ? h('code', {}, j.schedule.cron) : h('span', { class: 'muted' }, 'CLI only'),
        j.schedule ? h('span', { class: 'muted tz' }, ` ${j.schedule.timezone}`) : null,
      ),
      h(
        'td',
        { 'data-field': 'next' },
        j.nextFireAt ? h('span', { class: 'nowrap' }, instant(j.nextFireAt, j.schedule?.timezone)) : '–',
        j.nextFireAt ? h('div', { class: 'muted small' }, `${relative(j.nextFireAt, now)}, scores ${j.nextDate ?? '–'}`) : null,
      ),
      h(
        'td',
        { 'data-field': 'newest' },
        j.newest ? j.newest.date : h('span', { class: 'muted' }, 'nothing published'),
        j.newest
          ? h('div', { class: 'muted small' }, `run ${j.newest.runId} · ${j.newest.model.name} v${j.newest.model.version}`)
          : null,
      ),
      h('td', { 'data-field': 'age', class: 'num' }, j.newest ? `${span(j.newest.ageSeconds)} ago` : '–'),
      h('td', { class: 'error-cell' }, j.error ? h('span', { class: 'error', title: j.error }, j.error) : null),
    ),
  );
  fill(
    byId('jobs'),
    jobs.length === 0
      ? h('p', { class: 'empty' }, 'No jobs this token may see.')
      : h(
          'table',
          { class: 'table', id: 'jobs-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ...['Job', 'Model', 'Schedule', 'Next fire', 'Newest published', 'Age', 'Problem'].map((t) => h('th', {}, t)),
            ),
          ),
          h('tbody', {}, ...rows),
        ),
  );
  const select = byId<HTMLSelectElement>('runs-job');
  const chosen = select.value;
  fill(select, h('option', { value: '' }, 'all'), ...jobs.map((j) => h('option', { value: j.name }, j.name)));
  select.value = jobs.some((j) => j.name === chosen) ? chosen : '';
}

// ---- runs --------------------------------------------------------------------------------

function reportButton(id: string, open: (id: string) => void, label = 'report'): HTMLButtonElement {
  const b = h('button', { type: 'button', class: 'link' }, label);
  b.addEventListener('click', (e) => {
    e.stopPropagation();
    open(id);
  });
  return b;
}

function problem(r: RunRow): HTMLElement | null {
  const text = r.error ?? r.heldReason;
  if (!text) {
    const warns = (r.breaches ?? []).filter((b) => b.action === 'warn');
    return warns.length
      ? h('span', { class: 'warn', title: warns.map(describe).join('; ') }, `${warns.length} gate warning(s)`)
      : null;
  }
  // Long errors are cut for the table; the tooltip has them whole.
  return h('span', { class: 'error', title: text }, text.length > 240 ? `${text.slice(0, 239)}…` : text);
}

export function renderRuns(runs: RunRow[], open: (id: string) => void): void {
  const rows = runs.map((r) => {
    const tr = h(
      'tr',
      { 'data-run-id': r.id, class: r.status === 'held' ? 'row-held clickable' : 'clickable' },
      h('td', { 'data-field': 'id', class: 'num' }, r.id),
      h('td', { 'data-field': 'job', class: 'name' }, r.job),
      h('td', { 'data-field': 'date', class: 'nowrap' }, r.date),
      h('td', {}, badge(r.status)),
      h('td', { 'data-field': 'serving' }, r.serving ? h('span', { class: 'serving' }, '● serving') : ''),
      h('td', { 'data-field': 'model' }, `${r.modelName} v${r.modelVersion}`),
      h('td', { 'data-field': 'rowsRead', class: 'num' }, count(r.rowsRead)),
      h('td', { 'data-field': 'rowsWritten', class: 'num' }, count(r.rowsWritten)),
      h('td', { 'data-field': 'rowsRejected', class: r.rowsRejected ? 'num rejected' : 'num' }, count(r.rowsRejected)),
      h('td', { 'data-field': 'rowsPerSecond', class: 'num' }, count(r.rowsPerSecond)),
      h('td', { 'data-field': 'duration', class: 'num' }, r.durationMs === null ? '–' : span(r.durationMs / 1000)),
      h('td', { class: 'muted small' }, instant(r.startedAt)),
      h('td', { class: 'error-cell' }, problem(r)),
      h('td', {}, r.status === 'running' || r.status === 'finalizing' ? '' : reportButton(r.id, open)),
    );
    tr.addEventListener('click', () => open(r.id));
    return tr;
  });
  fill(
    byId('runs'),
    runs.length === 0
      ? h('p', { class: 'empty' }, 'No runs.')
      : h(
          'table',
          { class: 'table', id: 'runs-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ...[
                ['Run', 'num'],
                ['Job', ''],
                ['Date', ''],
                ['Status', ''],
                ['Serves', ''],
                ['Model', ''],
                ['Read', 'num'],
                ['Written', 'num'],
                ['Rejected', 'num'],
                ['Rows/s', 'num'],
                ['Duration', 'num'],
                ['Started', ''],
                ['Error / gate', ''],
                ['', ''],
              ].map(([t, c]) => h('th', { class: c }, t)),
            ),
          ),
          h('tbody', {}, ...rows),
        ),
  );
}

// ---- held runs ---------------------------------------------------------------------------

export function describe(b: Breach): string {
  return `${b.gate} ${num(b.value)} > ${b.threshold}${b.column === null ? '' : ` on ${b.column}`} (${b.action})`;
}

export function gateTable(breaches: Breach[]): HTMLTableElement {
  return h(
    'table',
    { class: 'gates' },
    h('thead', {}, h('tr', {}, ...['Gate', 'Column', 'Value', 'Threshold', 'Action'].map((t) => h('th', {}, t)))),
    h(
      'tbody',
      {},
      ...breaches.map((b) =>
        h(
          'tr',
          { class: b.action === 'block' ? 'block' : 'warn', 'data-gate': b.gate },
          h('td', { 'data-field': 'gate' }, b.gate),
          h('td', { 'data-field': 'column', class: 'name' }, b.column ?? '(the run)'),
          h('td', { 'data-field': 'value', class: 'num' }, num(b.value)),
          h('td', { 'data-field': 'threshold', class: 'num' }, String(b.threshold)),
          h('td', { 'data-field': 'action' }, b.action),
        ),
      ),
    ),
  );
}

export function renderHeld(held: RunRow[], open: (id: string) => void): void {
  const section = byId('held');
  section.hidden = held.length === 0;
  if (held.length === 0) return fill(section);
  fill(
    section,
    h('h2', {}, `${held.length} run${held.length === 1 ? '' : 's'} held by a quality gate: not published`),
    h(
      'p',
      {},
      'A held run is never served: its date keeps the run that served it before, if any. Publish it with ',
      h('code', {}, 'prescore runs approve <id> --reason "..."'),
      ' or drop it with ',
      h('code', {}, 'prescore runs reject <id>'),
      '.',
    ),
    ...held.map((r) =>
      h(
        'div',
        { class: 'held-run', 'data-run-id': r.id },
        h(
          'div',
          { class: 'held-title' },
          h('strong', {}, `Run ${r.id}`),
          ' · ',
          h('span', { class: 'name' }, r.job),
          ` · ${r.date} · ${r.modelName} v${r.modelVersion} · ${count(r.rowsRead)} rows · `,
          reportButton(r.id, open, 'open report'),
        ),
        r.breaches && r.breaches.length
          ? gateTable([...r.breaches].sort((a, b) => Number(b.action === 'block') - Number(a.action === 'block')))
          : h('p', { class: 'error' }, r.heldReason ?? 'held'),
      ),
    ),
  );
}
