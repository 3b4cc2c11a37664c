import type { Pool } from '../db/pool.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { loadActiveTokens, tokenDigest, type ActiveToken } from './tokens.js';
import { HttpError } from './validate.js';

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/**
 * The unrevoked API tokens, in memory by sha256, reloaded when `prescore tokens` announces a
 * change and periodically. While the set is empty the API is open (a fresh install answers
 * without setup); as soon as one token exists, every /v1 request needs a valid one.
 *
 * A lookup by digest in a Map leaks no useful timing: the attacker would have to choose
 * tokens by the bytes of their sha256.
 */
export class TokenCache {
  private byDigest = new Map<string, ActiveToken>();
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
  ) {}

  get enforced(): boolean {
    return this.byDigest.size > 0;
  }

  /** Loads the token set again; reloads run one after another, so the last one asked wins. */
  reload(): Promise<void> {
    const next = this.chain.then(async () => {
      try {
        const tokens = await loadActiveTokens(this.pool);
        this.byDigest = new Map(tokens.map((t) => [t.sha256, t]));
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

  /** Throws 401 or 403 unless the Authorization header carries a token that may read `job`. */
  check(authorization: string | undefined, job: string | undefined): void {
    if (!this.enforced) return;
    const m = authorization === undefined ? null : BEARER.exec(authorization);
    if (!m) throw new HttpError(401, 'this API needs a bearer token: send "Authorization: Bearer psk_..."');
    const token = this.byDigest.get(tokenDigest(m[1]!));
    if (!token) throw new HttpError(401, 'the bearer token is not valid (unknown or revoked)');
    if (job !== undefined && token.jobs !== null && !token.jobs.has(job)) {
      throw new HttpError(403, `token ${token.id} may not read job "${job}"`);
    }
  }
}
