/**
 * The dashboard page (`/ui`): jobs and their schedules, runs, held runs and drift reports,
 * read from the API with the same bearer tokens as the predictions. The token is typed once
 * and kept in sessionStorage (this tab only); with auth off no token is asked.
 */
import { TOKEN_KEY, Unauthorized, getJson, type JobRow, type ReportBody, type RunRow } from './api.js';
import { byId, fill, h } from './dom.js';
import { renderReport } from './report.js';
import { renderHeld, renderJobs, renderRuns } from './tables.js';

const REFRESH_MS = 60_000;

function setState(name: 'login' | 'ready' | 'error' | 'loading'): void {
  document.body.dataset.state = name;
}

function openReport(id: string): void {
  if (location.hash === `#run=${id}`) void showReport(id);
  else location.hash = `run=${id}`;
}

function closeReport(): void {
  const section = byId('report');
  history.replaceState(null, '', location.pathname + location.search);
  section.hidden = true;
  delete section.dataset.runId;
  fill(section);
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
  fill(section, ...renderReport(body, closeReport));
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
  fill(byId('updated'));
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
    byId('login').hidden = true;
    byId('main').hidden = false;
    byId('refresh').hidden = false;
    byId('load-error').hidden = true;
    renderAuthState();
    byId('updated').textContent = `updated ${new Date().toLocaleTimeString('en-GB')}`;
    renderHeld(held.runs, openReport);
    renderJobs(jobs.jobs, new Date(jobs.now).getTime());
    renderRuns(runs.runs, openReport);
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
    closeReport();
    for (const id of ['held', 'jobs', 'runs']) fill(byId(id));
    showLogin();
  });
  byId('refresh').addEventListener('click', () => void refresh());
  for (const id of ['runs-job', 'runs-limit']) byId(id).addEventListener('change', () => void refresh());
  window.addEventListener('hashchange', () => {
    const id = hashRun();
    if (id && !byId('main').hidden) void showReport(id);
  });
  window.setInterval(() => {
    if (document.visibilityState === 'visible' && byId('login').hidden) void refresh();
  }, REFRESH_MS);
  void refresh();
}

start();
