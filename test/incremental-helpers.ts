import assert from 'node:assert/strict';
import { runPredictions, runRef } from '../src/db/sql/layers.js';
import { cli, type TestDb } from './helpers.js';

/** `prescore run --json` of an incremental job, as the incremental tests read it. */
export interface RunJson {
  id: string;
  status: string;
  rowsRead: number;
  rowsWritten: number;
  rowsRejected: number;
  rowsCarried: number;
  incremental: {
    full: boolean;
    reason: string | null;
    baseRunId?: string;
    changed?: number;
    gone?: number;
    layerOn?: string;
    readThrough?: number;
  } | null;
}

/** `prescore run <job> --date <date> --json`: published, and its counts add up. */
export async function run(db: TestDb, job: string, date: string, ...flags: string[]): Promise<RunJson> {
  const r = await cli(db, ['run', job, '--date', date, '--json', ...flags]);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as RunJson;
  assert.equal(info.status, 'published');
  assert.equal(info.rowsRead, info.rowsWritten + info.rowsRejected, 'read = written + rejected');
  return info;
}

/**
 * Everything a run publishes, per key, read as every reader reads it (a layer through to its
 * root, db/sql/layers.ts): champion score or reject reason, challenger score or reject reason.
 */
export async function published(db: TestDb, runId: string): Promise<Map<string, string>> {
  const ref = await runRef(db.pool, runId);
  const { rows } = await db.pool.query<{ k: string; v: string }>(
    `SELECT 'p:' || key AS k, score::text AS v FROM (${runPredictions(ref, 'key, score')}) p
     UNION ALL SELECT 'r:' || key, reason FROM prescore.rejects WHERE run_id = $1
     UNION ALL SELECT 'c' || slot || ':' || key, score::text FROM prescore.challenger_predictions WHERE run_id = $1
     UNION ALL SELECT 'cr' || slot || ':' || key, reason FROM prescore.challenger_rejects WHERE run_id = $1`,
    [runId],
  );
  const out = new Map<string, string>();
  for (const r of rows) {
    assert.ok(!out.has(r.k), `run ${runId}: ${r.k} is published twice`);
    out.set(r.k, r.v);
  }
  return out;
}

/** Same keys; scores within 1e-6, reject reasons equal. */
export function assertSame(actual: Map<string, string>, expected: Map<string, string>, what: string): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), `${what}: key sets`);
  for (const [k, v] of expected) {
    const a = actual.get(k)!;
    if (k.startsWith('p:') || (k.startsWith('c') && !k.startsWith('cr'))) {
      assert.ok(Math.abs(Number(a) - Number(v)) <= 1e-6, `${what}: ${k} ${a} vs ${v}`);
    } else assert.equal(a, v, `${what}: ${k}`);
  }
}
