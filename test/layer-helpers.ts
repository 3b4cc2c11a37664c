import { notifyPublished } from '../src/db/sql/serving.js';
import type { TestDb } from './helpers.js';

/**
 * Turns `layerId`, a published run holding all its rows, into a layer on `baseId` (a run of the
 * same job holding the same rows: the readers' view of it must not change), as a layered
 * incremental run stores itself (migration 012): its own table keeps only the keys in `keep`
 * (keys it "rescored" or added), every key of the base it keeps or lost goes into its mask,
 * and the rest it reads through to the base. `rescore` adds `bump` to those keys' stored scores
 * first, so a reader that reads the base where the layer differs shows it. Tells the API (the
 * publish channel). Returns what a reader must now see for the run: key -> score.
 */
export async function layerize(
  db: TestDb,
  layerId: string,
  baseId: string,
  change: { rescore?: string[]; gone?: string[]; bump?: number },
): Promise<Map<string, number | null>> {
  const rescore = change.rescore ?? [];
  const gone = change.gone ?? [];
  const bump = change.bump ?? 1;
  const p = db.pool;
  await p.query('UPDATE prescore.predictions SET score = score + $3 WHERE run_id = $1 AND key = ANY ($2::text[])', [
    layerId,
    rescore,
    bump,
  ]);
  await p.query('DELETE FROM prescore.predictions WHERE run_id = $1 AND key = ANY ($2::text[])', [layerId, gone]);
  // Masked: the base's keys the layer rescored or lost.
  await p.query(
    `INSERT INTO prescore.layer_masks (run_id, key)
     SELECT $1, key FROM prescore.predictions WHERE run_id = $2 AND key = ANY ($3::text[])`,
    [layerId, baseId, [...rescore, ...gone]],
  );
  // The layer keeps its rescored keys and the keys the base lacks; everything else reads through.
  await p.query(
    `DELETE FROM prescore.predictions l WHERE l.run_id = $1 AND NOT (l.key = ANY ($3::text[]))
        AND EXISTS (SELECT 1 FROM prescore.predictions b WHERE b.run_id = $2 AND b.key = l.key)`,
    [layerId, baseId, rescore],
  );
  await p.query('UPDATE prescore.runs SET base_run_id = $2 WHERE id = $1', [layerId, baseId]);
  const { rows } = await p.query<{ job: string; date: string }>('SELECT job, date::text FROM prescore.runs WHERE id = $1', [
    layerId,
  ]);
  // A reload of the job's pointers, as after a retention change.
  await notifyPublished(p, rows[0]!.job, null, null);
  const seen = await p.query<{ key: string; score: number | null }>(
    `SELECT key, score FROM prescore.predictions WHERE run_id = $1
     UNION ALL
     SELECT key, score FROM prescore.predictions b WHERE run_id = $2
        AND NOT EXISTS (SELECT 1 FROM prescore.layer_masks m WHERE m.run_id = $1 AND m.key = b.key)`,
    [layerId, baseId],
  );
  return new Map(seen.rows.map((r) => [r.key, r.score]));
}
