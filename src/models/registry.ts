import crypto from 'node:crypto';
import { InputError } from '../errors.js';
import { checkName, isName } from '../names.js';
import { withTransaction, type Pool } from '../db/pool.js';
import { readSignature, type ModelSignature } from './signature.js';
import { removeZipMap } from './zipmap.js';

export interface ModelVersion {
  name: string;
  version: number;
  sha256: string;
  signature: ModelSignature;
  createdAt: string;
  aliases: string[];
  /** Set when prescore rewrote the exported bytes at registration (a ZipMap removed). */
  rewrite: { from: string; note: string } | null;
}

export interface PinnedModel {
  name: string;
  version: number;
  sha256: string;
  signature: ModelSignature;
}

/**
 * Stores the ONNX bytes, their sha256 and signature. Registering the same bytes again under
 * the same name (without --version) returns the existing version instead of a copy.
 */
export async function registerModel(
  pool: Pool,
  input: { name: string; bytes: Uint8Array; file: string; version?: number; alias?: string },
): Promise<{
  version: number;
  sha256: string;
  created: boolean;
  signature: ModelSignature;
  rewrite: { from: string; note: string } | null;
}> {
  checkName(input.name, 'model name');
  if (input.alias !== undefined) checkAlias(input.alias);
  if (input.version !== undefined && (!Number.isInteger(input.version) || input.version < 1)) {
    throw new InputError(`--version must be a positive integer (got ${input.version})`);
  }
  const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');
  // A classifier exported with ZipMap is stored without it: its probabilities become a tensor.
  const zipmap = removeZipMap(input.bytes, input.file);
  const bytes = zipmap?.bytes ?? input.bytes;
  const rewrite = zipmap
    ? {
        from: sha(input.bytes),
        note: `ZipMap removed: ${zipmap.output} is the [N, ${zipmap.classes.length}] float tensor of the probabilities of classes ${zipmap.classes.join(', ')}`,
      }
    : null;
  const signature = await readSignature(bytes, input.file);
  const sha256 = sha(bytes);
  return withTransaction(pool, async (client) => {
    // Serialise registrations of one name so version numbers do not race.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['prescore.model:' + input.name]);
    let version = input.version;
    let created = true;
    if (version === undefined) {
      const same = await client.query<{ version: number }>(
        'SELECT version FROM prescore.models WHERE name = $1 AND sha256 = $2 ORDER BY version DESC LIMIT 1',
        [input.name, sha256],
      );
      if (same.rows[0]) {
        version = same.rows[0].version;
        created = false;
      } else {
        const next = await client.query<{ v: number }>(
          'SELECT coalesce(max(version), 0) + 1 AS v FROM prescore.models WHERE name = $1',
          [input.name],
        );
        version = next.rows[0]!.v;
      }
    }
    if (created) {
      const res = await client.query(
        `INSERT INTO prescore.models (name, version, sha256, onnx, signature, rewritten_from, rewrite)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO NOTHING`,
        [
          input.name,
          version,
          sha256,
          Buffer.from(bytes),
          JSON.stringify(signature),
          rewrite?.from ?? null,
          rewrite?.note ?? null,
        ],
      );
      if (res.rowCount === 0) {
        throw new InputError(
          `model ${input.name} version ${version} already exists; versions are immutable: pick another --version`,
        );
      }
    }
    if (input.alias !== undefined) await setAlias(client, input.name, version, input.alias);
    return { version, sha256, created, signature, rewrite };
  });
}

function checkAlias(alias: string): void {
  if (!/^[a-z][a-z0-9._-]*$/.test(alias)) {
    throw new InputError(
      `alias "${alias}" must start with a letter and match [a-z][a-z0-9._-]* (a number would read as a version)`,
    );
  }
}

async function setAlias(client: { query: Pool['query'] }, name: string, version: number, alias: string): Promise<void> {
  await client.query(
    `INSERT INTO prescore.model_aliases (name, alias, version) VALUES ($1, $2, $3)
     ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, updated_at = now()`,
    [name, alias, version],
  );
}

export async function promoteModel(pool: Pool, name: string, version: number, alias: string): Promise<void> {
  checkName(name, 'model name');
  checkAlias(alias);
  const exists = await pool.query('SELECT 1 FROM prescore.models WHERE name = $1 AND version = $2', [name, version]);
  if (exists.rowCount === 0) throw new InputError(`model ${name} has no version ${version}: see prescore models list`);
  await setAlias(pool, name, version, alias);
}

export async function listModels(pool: Pool, name?: string): Promise<ModelVersion[]> {
  const { rows } = await pool.query<{
    name: string;
    version: number;
    sha256: string;
    signature: ModelSignature;
    created_at: Date;
    aliases: string[];
    rewritten_from: string | null;
    rewrite: string | null;
  }>(
    `SELECT m.name, m.version, m.sha256, m.signature, m.created_at, m.rewritten_from, m.rewrite,
            coalesce(array_agg(a.alias ORDER BY a.alias) FILTER (WHERE a.alias IS NOT NULL), '{}') AS aliases
       FROM prescore.models m LEFT JOIN prescore.model_aliases a ON a.name = m.name AND a.version = m.version
      WHERE $1::text IS NULL OR m.name = $1
      GROUP BY m.name, m.version ORDER BY m.name, m.version`,
    [name ?? null],
  );
  return rows.map((r) => ({
    name: r.name,
    version: r.version,
    sha256: r.sha256,
    signature: r.signature,
    createdAt: r.created_at.toISOString(),
    aliases: r.aliases,
    rewrite: r.rewritten_from === null ? null : { from: r.rewritten_from, note: r.rewrite ?? '' },
  }));
}

/** Resolves `name@alias` or `name@version` to one pinned version. */
export async function resolveModel(pool: Pool, ref: string): Promise<PinnedModel> {
  const [name, tag, extra] = ref.split('@');
  if (name === undefined || tag === undefined || extra !== undefined || !isName(name) || !isName(tag))
    throw new InputError(`model "${ref}" must be name@alias or name@version, e.g. churn@champion or churn@3`);
  const byVersion = /^\d+$/.test(tag);
  const { rows } = await pool.query<{ name: string; version: number; sha256: string; signature: ModelSignature }>(
    byVersion
      ? 'SELECT name, version, sha256, signature FROM prescore.models WHERE name = $1 AND version = $2::int'
      : `SELECT m.name, m.version, m.sha256, m.signature FROM prescore.model_aliases a
           JOIN prescore.models m ON m.name = a.name AND m.version = a.version WHERE a.name = $1 AND a.alias = $2`,
    [name, tag],
  );
  const row = rows[0];
  if (!row) {
    const known = await pool.query('SELECT 1 FROM prescore.models WHERE name = $1 LIMIT 1', [name]);
    if (known.rowCount === 0)
      throw new InputError(`model "${name}" is not registered: run prescore models register ${name} <file.onnx>`);
    throw new InputError(
      byVersion
        ? `model ${name} has no version ${tag}: see prescore models list`
        : `model ${name} has no alias "${tag}": run prescore models promote ${name} <version> --alias ${tag}`,
    );
  }
  return row;
}

export async function loadModelBytes(pool: Pool, name: string, version: number): Promise<Uint8Array> {
  const { rows } = await pool.query<{ onnx: Buffer }>('SELECT onnx FROM prescore.models WHERE name = $1 AND version = $2', [
    name,
    version,
  ]);
  if (!rows[0]) throw new InputError(`model ${name} version ${version} is gone from the registry`);
  return rows[0].onnx;
}
