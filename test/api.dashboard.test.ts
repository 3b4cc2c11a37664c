import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'puppeteer-core';
import { createToken } from '../src/api/tokens.js';
import { nextFire } from '../src/scheduler/calendar.js';
import { request } from './api-helpers.js';
import {
  chromiumMissing,
  launchBrowser,
  openPage,
  pageState,
  screenshot,
  shownRuns,
  signIn,
  startServe,
} from './dashboard-helpers.js';
import { cli, createTestDb, jobSpec, registerModel, seedFeatures, writeJob, type TestDb } from './helpers.js';

const [D1, D2, D3] = ['2026-10-01', '2026-10-02', '2026-10-03'];
/** A real column name: whatever the page shows of it must stay text. */
const EVIL = '<img src=x onerror="window.__pwned=1">';
const FEATURES = ['f0', 'f1', 'f2', EVIL];
const QUOTED = `"${EVIL.replace(/"/g, '""')}"`;
const SCHEDULE = { cron: '0 2 * * *', timezone: 'Europe/Berlin' };

interface RunJson {
  id: string;
  job: string;
  status: string;
  rowsRead: number;
  rowsWritten: number;
  rowsRejected: number;
}
interface ReportJson {
  report: { columns: { column: string; kind: string; bins: { baseline: number[] } | null }[] };
  breaches: { gate: string; column: string | null; value: number; threshold: number; action: string }[];
}

async function json<T>(db: TestDb, args: string[]): Promise<T> {
  const r = await cli(db, [...args, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

/**
 * The dashboard in a real browser (Debian's chromium through puppeteer-core) against a real
 * `prescore serve`: what it shows equals what the CLI says, a held run shows its gate, the
 * report draws every feature and output, and a token for another job sees none of it.
 */
describe('dashboard at /ui', { skip: chromiumMissing() }, () => {
  let db: TestDb;
  let browser: Browser;
  let closeBrowser: () => Promise<void> = async () => undefined;
  let server: Awaited<ReturnType<typeof startServe>> | undefined;
  let allToken = '';
  let otherToken = '';
  let published = '';
  let held = '';
  let failed = '';
  /** What the CLI says, the oracle for what the page shows (nothing changes after before()). */
  let cliRuns: RunJson[] = [];
  let heldReport: ReportJson;

  before(async () => {
    db = await createTestDb('dashboard');
    await registerModel(db, 'lin', 'linear-float32');
    for (const [date, salt] of [
      [D1, 0],
      [D2, 1],
      [D3, 2],
    ] as const)
      await seedFeatures(db.pool, 'feats', { rows: 3000, features: 4, date, salt });
    await db.pool.query(`ALTER TABLE feats RENAME COLUMN f3 TO ${QUOTED}`);
    writeJob(
      db,
      jobSpec('dash', 'lin@champion', 'feats', FEATURES, { schedule: SCHEDULE, gates: { featurePsi: 0.25 }, onBadRow: 'fail' }),
    );
    writeJob(db, jobSpec('other', 'lin@champion', 'feats', FEATURES));
    // A job file whose name and contents are markup: listed with its error, as text.
    fs.writeFileSync(
      path.join(db.jobsDir, 'x<img src=y onerror="window.__pwned=2">.json'),
      '{"name": "<script>window.__pwned=3</script>"',
    );

    published = (await json<RunJson>(db, ['run', 'dash', '--date', D1])).id;
    const { sd } = (
      await db.pool.query<{ sd: number }>(`SELECT stddev(${QUOTED})::float8 AS sd FROM feats WHERE as_of = $1`, [D1])
    ).rows[0]!;
    // The hostile column shifted by two baseline SDs: featurePsi holds the run.
    await db.pool.query(`UPDATE feats SET ${QUOTED} = ${QUOTED} + $2 WHERE as_of = $1`, [D2, 2 * sd]);
    const h = await cli(db, ['run', 'dash', '--date', D2, '--json']);
    assert.equal(h.code, 1, h.stderr);
    held = (JSON.parse(h.stdout) as RunJson).id;
    // A failed run whose error names the hostile column (onBadRow "fail" on a NULL).
    await db.pool.query(`UPDATE feats SET ${QUOTED} = NULL WHERE as_of = $1 AND id = 7`, [D3]);
    const f = await cli(db, ['run', 'dash', '--date', D3, '--json']);
    assert.notEqual(f.code, 0);
    cliRuns = await json<RunJson[]>(db, ['runs', 'list']);
    failed = cliRuns.find((r) => r.status === 'failed')!.id;
    heldReport = await json<ReportJson>(db, ['runs', 'report', held]);

    allToken = (await createToken(db.pool, { name: 'ops' })).token;
    otherToken = (await createToken(db.pool, { jobs: ['other'] })).token;
    let launched: Awaited<ReturnType<typeof launchBrowser>>;
    [server, launched] = await Promise.all([startServe(db), launchBrowser()]);
    ({ browser, close: closeBrowser } = launched);
  });
  after(async () => {
    await closeBrowser();
    await server?.stop();
    await db?.drop();
  });

  test('the page asks for a token once, then shows the runs exactly as `prescore runs list --json`, the held one with its gate', async () => {
    const { page, problems } = await openPage(browser);
    await page.goto(`${server!.base}/ui`);
    assert.equal(await pageState(page, ['login', 'ready']), 'login');
    await screenshot(page, 'dashboard-login.png');
    assert.equal(await signIn(page, allToken), 'ready');

    assert.deepEqual(
      cliRuns.map((r) => r.status),
      ['failed', 'held', 'published'],
    );
    const shown = await shownRuns(page);
    assert.deepEqual(
      shown.map((r) => [r.id, r.job, r.status, r.rowsRead, r.rowsWritten, r.rowsRejected]),
      cliRuns.map((r) => [r.id, r.job, r.status, r.rowsRead, r.rowsWritten, r.rowsRejected]),
    );
    assert.deepEqual(
      shown.filter((r) => r.serving).map((r) => r.id),
      [published],
    );
    assert.ok(shown.find((r) => r.id === failed)!.text.includes(EVIL), 'the failed run shows its error, naming the column');

    // The held run, prominently: gate, column, value and threshold, as the report has them.
    const { breaches } = heldReport;
    assert.equal(breaches.length, 1);
    const gateRow = await page.$$eval(`#held .held-run[data-run-id="${held}"] tr[data-gate]`, (trs) =>
      trs.map((tr) =>
        Object.fromEntries([...tr.querySelectorAll('[data-field]')].map((td) => [td.getAttribute('data-field'), td.textContent])),
      ),
    );
    assert.equal(gateRow.length, 1);
    assert.equal(gateRow[0]!.gate, 'featurePsi');
    assert.equal(gateRow[0]!.column, EVIL);
    assert.equal(gateRow[0]!.threshold, '0.25');
    assert.equal(gateRow[0]!.action, 'block');
    const value = Number(gateRow[0]!.value);
    assert.ok(Math.abs(value - breaches[0]!.value) <= 0.01 * breaches[0]!.value, `${value} vs ${breaches[0]!.value}`);
    assert.match((await page.$eval('#held h2', (e) => e.textContent)) ?? '', /1 run held by a quality gate/);

    // Jobs: schedule, next fire and the newest published date (D1: D2 is held, D3 failed).
    const jobs = await page.$$eval('#jobs-table tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-job')));
    assert.deepEqual(jobs, ['dash', 'other', 'x<img src=y onerror="window.__pwned=2">']);
    const dash = await page.$eval('#jobs-table tr[data-job="dash"]', (tr) => tr.textContent ?? '');
    assert.ok(dash.includes('0 2 * * *') && dash.includes('Europe/Berlin'), dash);
    assert.match(dash, new RegExp(`${D1}run ${published}`));
    assert.match(dash, /(\d+(\.\d)? s|\d+ ms|\d+ min \d+ s) ago/);
    const api = await request<{
      jobs: { name: string; nextFireAt: string | null; newest: { date: string } | null; error: string | null }[];
    }>(server!.base, '/v1/jobs', { token: allToken });
    const want = nextFire({ ...SCHEDULE, dateOffsetDays: 0 }, new Date())!;
    const got = api.body.jobs.find((j) => j.name === 'dash')!;
    assert.ok(
      Math.abs(new Date(got.nextFireAt!).getTime() - want.at.getTime()) < 1000,
      `${got.nextFireAt} vs ${want.at.toISOString()}`,
    );
    assert.equal(got.newest!.date, D1);
    assert.match(api.body.jobs.find((j) => j.name.startsWith('x<img'))!.error!, /not valid JSON/);

    // Nothing the server sent became markup or ran.
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
    assert.equal(await page.$$eval('img, script:not([src])', (els) => els.length), 0);
    assert.deepEqual(problems, []);

    // The token is kept for the tab: a reload asks nothing.
    await page.reload();
    assert.equal(await pageState(page, ['login', 'ready']), 'ready');
    await page.close();
  });

  test('the report of the held run draws one histogram per feature and output, flagged first; a screenshot is saved', async () => {
    const { page, problems } = await openPage(browser);
    await page.goto(`${server!.base}/ui`);
    await signIn(page, allToken);
    await page.click(`#held .held-run[data-run-id="${held}"] button.link`);
    await page.waitForSelector(`#report[data-run-id="${held}"][data-loaded="ok"]`);
    const { report, breaches } = heldReport;
    const drawable = report.columns.filter((c) => c.kind !== 'label');
    assert.deepEqual(
      drawable.map((c) => c.column),
      [...FEATURES, 'score'],
    );
    const cards = await page.$$eval('#report .card', (els) =>
      els.map((e) => ({
        column: e.getAttribute('data-column'),
        flagged: e.getAttribute('data-flagged') !== null,
        bars: e.querySelectorAll('svg.histogram .bin').length,
        runBars: e.querySelectorAll('svg.histogram rect.bar.run').length,
        title: e.querySelector('h3')?.textContent,
      })),
    );
    const flagged = new Set(breaches.map((b) => b.column));
    assert.deepEqual(
      cards.map((c) => c.column),
      [EVIL, 'f0', 'f1', 'f2', 'score'],
    );
    assert.deepEqual(
      cards.map((c) => c.flagged),
      cards.map((c) => flagged.has(c.column)),
    );
    assert.equal(cards[0]!.title, EVIL);
    for (const c of cards) {
      const bins = drawable.find((d) => d.column === c.column)!.bins!.baseline.length;
      assert.equal(c.bars, bins, `${c.column}: one group per bin`);
      assert.equal(c.runBars, bins);
    }
    // The shifted column piles its run share at the top: the overflow bin's run bar is the tallest.
    const heights = await page.$eval('#report .card.flagged svg', (svg) =>
      [...svg.querySelectorAll('rect.bar.run')].map((r) => Number(r.getAttribute('height'))),
    );
    assert.equal(Math.max(...heights), heights[heights.length - 1]);
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
    assert.deepEqual(problems, []);
    await page.evaluate(() => window.scrollTo(0, 0));
    const file = await screenshot(page, 'dashboard.png');
    process.stdout.write(`# dashboard screenshot: ${file}\n`);
    await page.close();
  });

  test('a token for another job sees none of these runs, in the page or through the API', async () => {
    const { page } = await openPage(browser);
    await page.goto(`${server!.base}/ui#run=${held}`);
    assert.equal(await signIn(page, otherToken), 'ready');
    assert.equal(await page.$$eval('[data-run-id]:not(#report)', (els) => els.length), 0);
    assert.equal(await page.$eval('#held', (e) => (e as HTMLElement).hidden), true);
    assert.deepEqual(await page.$$eval('#jobs-table tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-job'))), ['other']);
    await page.waitForSelector(`#report[data-loaded="error"]`);
    assert.match((await page.$eval('#report', (e) => e.textContent)) ?? '', /may not read job "dash"/);
    const body = (await page.$eval('body', (e) => e.textContent)) ?? '';
    assert.ok(!body.includes(EVIL) && !body.includes(D1), 'nothing of job dash is shown');

    const base = server!.base;
    const runs = await request<{ runs: unknown[] }>(base, '/v1/runs', { token: otherToken });
    assert.deepEqual(runs.body.runs, []);
    assert.equal((await request(base, '/v1/runs?job=dash', { token: otherToken })).status, 403);
    assert.equal((await request(base, `/v1/runs/${held}/report`, { token: otherToken })).status, 403);
    assert.equal((await request(base, '/v1/runs?status=held', { token: otherToken })).text, '{"runs":[]}');

    // Forget the token: the page asks again; a wrong one is refused, saying so.
    await page.click('#forget');
    assert.equal(await pageState(page, ['login']), 'login');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.equal(await signIn(page, 'psk_not-a-token'), 'login');
    assert.match((await page.$eval('#login-error', (e) => e.textContent)) ?? '', /refused: the bearer token is not valid/);
    await page.close();
  });

  test('the page is served with a strict CSP and no caching of data; the data routes need a token', async () => {
    const base = server!.base;
    const pageRes = await request(base, '/ui');
    assert.equal(pageRes.status, 200);
    assert.match(pageRes.headers.get('content-type')!, /^text\/html/);
    const csp = pageRes.headers.get('content-security-policy')!;
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /default-src 'none'/);
    assert.doesNotMatch(csp, /unsafe/);
    assert.equal(pageRes.headers.get('x-content-type-options'), 'nosniff');
    assert.doesNotMatch(pageRes.text, /<script>|<script [^>]*>[^<]/, 'no inline script');
    for (const asset of ['/ui/app.js', '/ui/style.css', '/ui/histogram.js']) {
      const r = await request(base, asset);
      assert.equal(r.status, 200, asset);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    }
    assert.equal((await request(base, '/ui/app.js')).headers.get('content-type'), 'text/javascript; charset=utf-8');
    // Only the page's own files: nothing else of the package, whatever the spelling.
    for (const target of ['/ui/app.ts', '/ui/%2e%2e%2fpackage.json', '/ui/..%2Fpackage.json', '/ui/app.js.map', '/ui/x/app.js']) {
      const r = await request(base, target);
      assert.ok(r.status === 404 || r.status === 401, `${target}: ${r.status}`);
      assert.doesNotMatch(r.text, /"dependencies"|import /, target);
    }
    for (const route of ['/v1/jobs', '/v1/runs', `/v1/runs/${held}/report`]) {
      assert.equal((await request(base, route)).status, 401, route);
      const r = await request(base, route, { token: allToken });
      assert.equal(r.status, 200, route);
      assert.equal(r.headers.get('cache-control'), 'no-store', route);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', route);
    }
    assert.equal((await request(base, '/v1/runs?limit=0', { token: allToken })).status, 400);
    assert.equal((await request(base, '/v1/runs?status=nope', { token: allToken })).status, 400);
    assert.equal((await request(base, '/v1/runs?job=Bad%20Name', { token: allToken })).status, 400);
    assert.equal((await request(base, '/v1/runs?limt=5', { token: allToken })).status, 400);
    assert.equal((await request(base, '/v1/runs?job=dash&job=other', { token: allToken })).status, 400);
    const heldOnly = await request<{ runs: RunJson[] }>(base, '/v1/runs?status=held', { token: allToken });
    assert.deepEqual(
      heldOnly.body.runs.map((r) => r.id),
      [held],
    );
  });

  test('with --no-auth the page asks for no token', async () => {
    const open = await startServe(db, ['--no-auth']);
    try {
      const { page, problems } = await openPage(browser);
      await page.goto(`${open.base}/ui`);
      assert.equal(await pageState(page, ['login', 'ready']), 'ready');
      assert.equal(await page.$eval('#login', (e) => (e as HTMLElement).hidden), true);
      assert.match((await page.$eval('#auth-state', (e) => e.textContent)) ?? '', /auth off/);
      assert.deepEqual(
        (await shownRuns(page)).map((r) => r.id),
        cliRuns.map((r) => r.id),
      );
      assert.deepEqual(problems, []);
      await page.close();
    } finally {
      await open.stop();
    }
  });
});
