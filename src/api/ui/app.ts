/**
 * The dashboard page (`/ui`): jobs and their schedules, runs, held runs and drift reports,
 * read from the API with the same bearer tokens as the predictions. The token is typed once
 * and kept in sessionStorage (this tab only); with auth off no token is asked.
 */
import type { JobInfo } from '../dashboard.js';
import type { RunInfo } from '../../db/sql/run-info.js';
import type { Breach } from '../../profile/gates.js';
import type { ColumnDrift, DriftReport } from '../../profile/drift.js';
import { byId, fill, h } from './dom.js';
import { count, instant, num, pct, relative, span } from './format.js';
import { histogram } from './histogram.js';

interface JobRow extends JobInfo {
  newest: {
    date: string;
    runId: string;
    model: { name: string; version: number };
    publishedAt: string;
    ageSeconds: number;
  } | null;
}
interface RunRow extends RunInfo {
  serving: boolean;
  breaches: Breach[] | null;
}
interface ReportBody {
  run: { id: string; job: string; date: string; status: string; heldReason: string | null };
  baseline: { kind: string; ref: string | null; rows: number | null };
  report: DriftReport;
  breaches: Breach[];
  createdAt: string;
}

const TOKEN_KEY = 'prescore.token';
const REFRESH_MS = 60_000;

class Unauthorized extends Error {}

/** GET of an API route, relative to the page (so the page works behind a path prefix too). */
async function getJson<T>(path: string): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { headers, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  let body: { error?: unknown } | undefined;
  try {
    body = (await res.json()) as { error?: unknown };
  } catch {
    body = undefined;
  }
  const message = typeof body?.error === 'string' ? body.error : `${res.status} ${res.statusText}`;
  if (res.status === 401) throw new Unauthorized(message);
  if (!res.ok) throw new Error(message);
  return body as T;
}

const state = { serverNow: Date.now(), jobs: [] as JobRow[], timer: 0 };

function setState(name: 'login' | 'ready' | 'error' | 'loading'): void {
  document.body.dataset.state = name;
}

function badge(status: string): HTMLElement {
  return h('span', { class: `badge status-${status}`, 'data-field': 'status' }, status);
}

// ---- jobs --------------------------------------------------------------------------------

function renderJobs(jobs: JobRow[]): void {
  const now = state.serverNow;
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
        j.nextFireAt ? instant(j.nextFireAt, j.schedule?.timezone) : '–',
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

function openReport(id: string): void {
  if (location.hash === `#run=${id}`) void showReport(id);
  else location.hash = `run=${id}`;
}

function reportButton(id: string, label = 'report'): HTMLButtonElement {
  const b = h('button', { type: 'button', class: 'link' }, label);
  b.addEventListener('click', (e) => {
    e.stopPropagation();
    openReport(id);
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
  // The whole text, clamped to a few lines by the style sheet (the tooltip has it all).
  return h('span', { class: 'error clamp', title: text }, text);
}

function renderRuns(runs: RunRow[]): void {
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
      h('td', {}, r.status === 'running' || r.status === 'finalizing' ? '' : reportButton(r.id)),
    );
    tr.addEventListener('click', () => openReport(r.id));
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

function describe(b: Breach): string {
  return `${b.gate} ${num(b.value)} > ${b.threshold}${b.column === null ? '' : ` on ${b.column}`} (${b.action})`;
}

function gateTable(breaches: Breach[]): HTMLTableElement {
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

function renderHeld(held: RunRow[]): void {
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
          reportButton(r.id, 'open report'),
        ),
        r.breaches && r.breaches.length
          ? gateTable([...r.breaches].sort((a, b) => Number(b.action === 'block') - Number(a.action === 'block')))
          : h('p', { class: 'error' }, r.heldReason ?? 'held'),
      ),
    ),
  );
}

// ---- report ------------------------------------------------------------------------------

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

async function showReport(id: string): Promise<void> {
  const section = byId('report');
  section.hidden = false;
  section.dataset.runId = id;
  delete section.dataset.loaded;
  fill(section, h('p', { class: 'muted' }, `Loading the report of run ${id}…`));
  let body: ReportBody;
  try {
    body = await getJson<ReportBody>(`v1/runs/${encodeURIComponent(id)}/report`);
  } catch (err) {
    if (err instanceof Unauthorized) return showLogin(err.message);
    fill(section, h('h2', {}, `Run ${id}`), h('p', { class: 'error' }, (err as Error).message));
    section.dataset.loaded = 'error';
    return;
  }
  const { run, report, breaches } = body;
  const byColumn = new Map<string, Breach[]>();
  for (const b of breaches) if (b.column !== null) byColumn.set(b.column, [...(byColumn.get(b.column) ?? []), b]);
  // Flagged columns first; otherwise the report's order (features, then outputs).
  const columns = report.columns
    .map((c, i) => ({ c, i, flagged: byColumn.has(c.column) }))
    .sort((a, b) => Number(b.flagged) - Number(a.flagged) || a.i - b.i)
    .map((x) => x.c);
  const close = h('button', { type: 'button', class: 'link' }, 'close');
  close.addEventListener('click', () => {
    history.replaceState(null, '', location.pathname + location.search);
    section.hidden = true;
    fill(section);
  });
  const rc = report.rows.change;
  fill(
    section,
    h('div', { class: 'section-head' }, h('h2', {}, `Drift report · run ${run.id}`), close),
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
      : null,
    columns.length
      ? h('div', { class: 'cards' }, ...columns.map((c) => columnCard(c, byColumn.get(c.column) ?? [])))
      : h('p', { class: 'muted' }, 'No column to compare.'),
  );
  section.dataset.loaded = 'ok';
  section.scrollIntoView({ block: 'start' });
}

function hashRun(): string | undefined {
  return /^#run=(\d{1,19})$/.exec(location.hash)?.[1];
}

// ---- loading and the token ---------------------------------------------------------------

function showLogin(message?: string): void {
  const stored = sessionStorage.getItem(TOKEN_KEY);
  if (stored) sessionStorage.removeItem(TOKEN_KEY);
  byId('main').hidden = true;
  byId('refresh').hidden = true;
  byId('forget').hidden = true;
  fill(byId('auth-state'));
  byId('login').hidden = false;
  byId('login-error').textContent = stored && message ? `The token was refused: ${message}` : '';
  byId<HTMLInputElement>('token').focus();
  setState('login');
}

function renderAuthState(): void {
  const token = sessionStorage.getItem(TOKEN_KEY);
  byId('forget').hidden = !token;
  fill(
    byId('auth-state'),
    token
      ? h('span', {}, `token ${token.slice(0, 4)}…${token.slice(-4)}`)
      : h('span', { class: 'warn' }, 'auth off: no token needed'),
  );
}

function runsPath(): string {
  const job = byId<HTMLSelectElement>('runs-job').value;
  const limit = byId<HTMLSelectElement>('runs-limit').value;
  return `v1/runs?limit=${encodeURIComponent(limit)}${job ? `&job=${encodeURIComponent(job)}` : ''}`;
}

async function refresh(): Promise<void> {
  setState('loading');
  try {
    const [jobs, runs, held] = await Promise.all([
      getJson<{ now: string; jobs: JobRow[] }>('v1/jobs'),
      getJson<{ runs: RunRow[] }>(runsPath()),
      getJson<{ runs: RunRow[] }>('v1/runs?status=held&limit=100'),
    ]);
    state.serverNow = new Date(jobs.now).getTime();
    state.jobs = jobs.jobs;
    byId('login').hidden = true;
    byId('main').hidden = false;
    byId('refresh').hidden = false;
    byId('load-error').hidden = true;
    renderAuthState();
    renderHeld(held.runs);
    renderJobs(jobs.jobs);
    renderRuns(runs.runs);
    const id = hashRun();
    if (id && byId('report').dataset.runId !== id) await showReport(id);
    setState('ready');
  } catch (err) {
    if (err instanceof Unauthorized) return showLogin(err.message);
    const box = byId('load-error');
    box.textContent = `Could not load: ${(err as Error).message}`;
    box.hidden = false;
    byId('main').hidden = false;
    setState('error');
  }
}

function start(): void {
  byId('login').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = byId<HTMLInputElement>('token');
    const token = input.value.trim();
    // A header value cannot hold spaces or control characters: say so rather than fail in fetch.
    if (!/^[\x21-\x7e]+$/.test(token)) {
      byId('login-error').textContent = 'A token is one word of printable characters (psk_...).';
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    input.value = '';
    void refresh();
  });
  byId('forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    byId('report').hidden = true;
    fill(byId('report'));
    delete byId('report').dataset.runId;
    for (const id of ['held', 'jobs', 'runs']) fill(byId(id));
    showLogin();
  });
  byId('refresh').addEventListener('click', () => void refresh());
  for (const id of ['runs-job', 'runs-limit']) byId(id).addEventListener('change', () => void refresh());
  window.addEventListener('hashchange', () => {
    const id = hashRun();
    if (id && !byId('main').hidden) void showReport(id);
  });
  state.timer = window.setInterval(() => {
    if (document.visibilityState === 'visible' && byId('login').hidden) void refresh();
  }, REFRESH_MS);
  void refresh();
}

start();
