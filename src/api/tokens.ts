import crypto from 'node:crypto';
import { InputError } from '../errors.js';
import { withTransaction, type Pool } from '../db/pool.js';
import { checkName } from '../names.js';

/** Token changes are announced here so every `prescore serve` reloads its token set at once. */
export const TOKENS_CHANNEL = 'prescore_tokens';
const PREFIX = 'psk_';

export interface TokenInfo {
  id: string;
  name: string | null;
  /** null: every job. */
  jobs: string[] | null;
  createdAt: string;
  revokedAt: string | null;
}

/** What the API keeps in memory: the digest and the scope, never the secret. */
export interface ActiveToken {
  id: string;
  sha256: string;
  jobs: ReadonlySet<string> | null;
}

export function tokenDigest(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}

/** 32 random bytes, base64url, with a recognisable prefix (secret scanners can match `psk_`). */
function newSecret(): string {
  return PREFIX + crypto.randomBytes(32).toString('base64url');
}

/** Stores a new token's digest and returns the secret, which exists nowhere else afterwards. */
export async function createToken(
  pool: Pool,
  options: { name?: string; jobs?: string[] },
): Promise<{ token: string; info: TokenInfo }> {
  const jobs = options.jobs?.length ? [...new Set(options.jobs.map((j) => checkName(j, '--job')))] : null;
  const name = options.name?.trim() || null;
  const token = newSecret();
  const info = await withTransaction(pool, async (client) => {
    const { rows } = await client.query<TokenRow>(
      `INSERT INTO prescore.api_tokens (name, sha256, jobs) VALUES ($1, $2, $3::text[])
       RETURNING id::text, name, jobs, created_at, revoked_at`,
      [name, tokenDigest(token), jobs],
    );
    await client.query('SELECT pg_notify($1, $2)', [TOKENS_CHANNEL, rows[0]!.id]);
    return toInfo(rows[0]!);
  });
  return { token, info };
}

export async function listTokens(pool: Pool): Promise<TokenInfo[]> {
  const { rows } = await pool.query<TokenRow>(
    'SELECT id::text, name, jobs, created_at, revoked_at FROM prescore.api_tokens ORDER BY id',
  );
  return rows.map(toInfo);
}

/** Revokes a token; returns false when it already was. */
export async function revokeToken(pool: Pool, id: string): Promise<boolean> {
  if (!/^\d{1,18}$/.test(id)) throw new InputError(`token id must be a number (got "${id}"): see prescore tokens list`);
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ revoked: boolean }>(
      'SELECT revoked_at IS NOT NULL AS revoked FROM prescore.api_tokens WHERE id = $1::bigint FOR UPDATE',
      [id],
    );
    if (!rows[0]) throw new InputError(`token ${id} does not exist: see prescore tokens list`);
    if (rows[0].revoked) return false;
    await client.query('UPDATE prescore.api_tokens SET revoked_at = now() WHERE id = $1::bigint', [id]);
    await client.query('SELECT pg_notify($1, $2)', [TOKENS_CHANNEL, id]);
    return true;
  });
}

/** The unrevoked tokens, and whether any token was ever created (revoked ones count). */
export async function loadActiveTokens(pool: Pool): Promise<{ tokens: ActiveToken[]; everCreated: boolean }> {
  const { rows } = await pool.query<{ id: string; sha256: string; jobs: string[] | null; revoked: boolean }>(
    'SELECT id::text, sha256, jobs, revoked_at IS NOT NULL AS revoked FROM prescore.api_tokens',
  );
  return {
    tokens: rows.filter((r) => !r.revoked).map((r) => ({ id: r.id, sha256: r.sha256, jobs: r.jobs ? new Set(r.jobs) : null })),
    everCreated: rows.length > 0,
  };
}

interface TokenRow {
  id: string;
  name: string | null;
  jobs: string[] | null;
  created_at: Date;
  revoked_at: Date | null;
}

function toInfo(r: TokenRow): TokenInfo {
  return {
    id: r.id,
    name: r.name,
    jobs: r.jobs,
    createdAt: r.created_at.toISOString(),
    revokedAt: r.revoked_at?.toISOString() ?? null,
  };
}
