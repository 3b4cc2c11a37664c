/** The page's reads of the API: the token, the one GET, and the shapes of the answers. */
import type { JobInfo } from '../dashboard.js';
import type { RunInfo } from '../../db/sql/run-info.js';
import type { Breach } from '../../profile/gates.js';
import type { DriftReport } from '../../profile/drift.js';

export interface JobRow extends JobInfo {
  newest: {
    date: string;
    runId: string;
    model: { name: string; version: number };
    publishedAt: string;
    ageSeconds: number;
  } | null;
}
export interface RunRow extends RunInfo {
  serving: boolean;
  breaches: Breach[] | null;
}
export interface ReportBody {
  run: { id: string; job: string; date: string; status: string; heldReason: string | null };
  baseline: { kind: string; ref: string | null; rows: number | null };
  report: DriftReport;
  breaches: Breach[];
  createdAt: string;
}

export const TOKEN_KEY = 'prescore.token';

export class Unauthorized extends Error {}

/** GET of an API route, relative to the page (so the page works behind a path prefix too). */
export async function getJson<T>(path: string): Promise<T> {
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
