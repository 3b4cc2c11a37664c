import type { Pool } from '../db/pool.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { loadActiveTokens, tokenDigest, type ActiveToken } from './tokens.js';
import { HttpError } from '../errors.js';

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/**
 * Whether the API asks for tokens:
 * - `auto` (the default): open until the first token is created, then closed for good;
 *   revoking every token leaves it closed (nobody can read), it never opens again by itself;
 * - `token`: always closed, even before any token exists (what a production deployment sets);
 * - `none`: open, whatever tokens exist (`PRESCORE_API_AUTH=none` or `serve --no-auth`).
 */
export type AuthMode = 'auto' | 'token' | 'none';
export const AUTH_MODES: readonly AuthMode[] = ['auto', 'token', 'none'];

/**
 * The unrevoked API tokens, in memory by sha256, reloaded when `prescore tokens` announces a
 * change and periodically.
 *
 * A lookup by digest in a Map leaks no useful timing: the attacker would have to choose
 * tokens by the bytes of their sha256.
 */
export class TokenCache {
  private byDigest = new Map<string, ActiveToken>();
  private everCreated = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    readonly mode: AuthMode = 'auto',
  ) {}

  /** True while requests need a token. */
  get enforced(): boolean {
    return this.mode === 'token' || (this.mode === 'auto' && this.everCreated);
  }

  /** Loads the token set again; reloads run one after another, so the last one asked wins. */
  reload(): Promise<void> {
    const next = this.chain.then(async () => {
      try {
        const { tokens, everCreated } = await loadActiveTokens(this.pool);
        this.byDigest = new Map(tokens.map((t) => [t.sha256, t]));
        // Once closed, closed: a failed reload or a later empty set never re-opens the API.
        this.everCreated ||= everCreated;
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'could not load the API tokens; keeping the ones in memory');
        throw err;
      }
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Settles when the reloads asked so far have. */
  idle(): Promise<void> {
    return this.chain;
  }

  /**
   * Throws 401 or 403 unless the Authorization header carries a token that may read `job`.
   * `unscoped`: the route shows every job (metrics), so a token limited to jobs may not call it.
   */
  check(authorization: string | undefined, job: string | undefined, unscoped = false): void {
    if (!this.enforced) return;
    const m = authorization === undefined ? null : BEARER.exec(authorization);
    if (!m) throw new HttpError(401, 'this API needs a bearer token: send "Authorization: Bearer psk_..."');
    const token = this.byDigest.get(tokenDigest(m[1]!));
    if (!token) throw new HttpError(401, 'the bearer token is not valid (unknown or revoked)');
    if (token.jobs === null) return;
    if (unscoped) throw new HttpError(403, 'this token is limited to some jobs; this route needs a token for every job');
    if (job !== undefined && !token.jobs.has(job)) throw new HttpError(403, `this token may not read job "${job}"`);
  }

  /**
   * The jobs the request may read: null for every job (auth off, or a token for every job),
   * else the token's jobs. Throws 401 as check() does, so a listing never answers without a
   * valid token.
   */
  scope(authorization: string | undefined): ReadonlySet<string> | null {
    this.check(authorization, undefined);
    if (!this.enforced) return null;
    const m = BEARER.exec(authorization!)!;
    return this.byDigest.get(tokenDigest(m[1]!))!.jobs;
  }

  /** True when the request may see details (auth is off, or it carries a valid token). */
  allows(authorization: string | undefined): boolean {
    try {
      this.check(authorization, undefined);
      return true;
    } catch {
      return false;
    }
  }
}
