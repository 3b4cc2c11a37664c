import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { packageRoot } from '../src/paths.js';
import { startCli, waitFor, type TestDb } from './helpers.js';

/** Debian's chromium; the dashboard tests skip (saying why) without it. */
export const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = path.join(packageRoot, 'test-artifacts');

export function chromiumMissing(): string | false {
  return fs.existsSync(CHROMIUM) ? false : `chromium is not installed (${CHROMIUM}): apt-get install -y chromium`;
}

/** Headless chromium with a throw-away profile, nothing fetched from anywhere but the page. */
export async function launchBrowser(): Promise<{ browser: Browser; close(): Promise<void> }> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      `--user-data-dir=${profile}`,
    ],
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A page that records what would show a broken page: uncaught errors, and console errors other
 * than the browser's own note on a refused request (the first load without a token gets 401).
 */
export async function openPage(browser: Browser): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 900 });
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${String(err)}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return { page, problems };
}

/** `prescore serve --port 0 ...args` as a child process; resolves once it prints its address. */
export async function startServe(
  db: TestDb,
  args: string[] = [],
): Promise<{ base: string; stop(): Promise<void>; output(): { stdout: string; stderr: string } }> {
  const child = startCli(db, ['serve', '--port', '0', ...args]);
  const base = await waitFor(
    'prescore serve to listen',
    () => {
      if (child.exitCode() !== null) throw new Error(`serve exited: ${child.output().stderr}`);
      return /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(child.output().stdout)?.[1];
    },
    20_000,
  );
  return {
    base,
    output: child.output,
    stop: async () => {
      child.kill('SIGTERM');
      await child.done;
    },
  };
}

/** Waits until the page says it has loaded (body[data-state]), returning the state. */
export async function pageState(page: Page, states: string[]): Promise<string> {
  const sel = states.map((s) => `body[data-state="${s}"]`).join(', ');
  await page.waitForSelector(sel, { timeout: 15_000 });
  return page.$eval('body', (b) => b.dataset.state ?? '');
}

/** Types a token into the page's form and waits for the page to load with it. */
export async function signIn(page: Page, token: string): Promise<string> {
  await page.waitForSelector('#token', { visible: true });
  await page.type('#token', token);
  await page.keyboard.press('Enter');
  return pageState(page, ['ready', 'login', 'error']);
}

export interface ShownRun {
  id: string;
  job: string;
  status: string;
  serving: boolean;
  rowsRead: number;
  rowsWritten: number;
  rowsRejected: number;
  text: string;
}

/** The runs table as a person reads it (numbers without their thousands separators). */
export function shownRuns(page: Page): Promise<ShownRun[]> {
  return page.$$eval('#runs-table tbody tr', (trs) =>
    trs.map((tr) => {
      const f = (name: string) => tr.querySelector(`[data-field="${name}"]`)?.textContent ?? '';
      const n = (name: string) => Number(f(name).replace(/,/g, ''));
      return {
        id: f('id'),
        job: f('job'),
        status: f('status'),
        serving: f('serving').includes('serving'),
        rowsRead: n('rowsRead'),
        rowsWritten: n('rowsWritten'),
        rowsRejected: n('rowsRejected'),
        text: tr.textContent ?? '',
      };
    }),
  );
}

export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file as `${string}.png`, fullPage: true });
  return file;
}
