import http from 'node:http';
import https from 'node:https';

export interface PostResult {
  ok: boolean;
  status: number | null;
  error: string | null;
}

/**
 * POSTs a JSON body to a webhook, bounded by `timeoutMs` from connect to the last byte of the
 * answer (a receiver that accepts and never answers is cut off). A 2xx answer is a delivery;
 * anything else, redirects included, is a failed attempt. No keep-alive: a dispatcher posts
 * rarely, and a pooled socket would keep a finishing process alive.
 */
export function postJson(url: string, body: string, headers: Record<string, string>, timeoutMs: number): Promise<PostResult> {
  return new Promise((resolve) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const client = url.startsWith('https:') ? https : http;
    let settled = false;
    const done = (r: PostResult) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = client.request(
      url,
      {
        method: 'POST',
        agent: false,
        signal,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        res.on('end', () =>
          done(
            status >= 200 && status < 300 ? { ok: true, status, error: null } : { ok: false, status, error: `HTTP ${status}` },
          ),
        );
        res.on('error', (err) => done({ ok: false, status, error: describe(err, signal, timeoutMs) }));
      },
    );
    req.on('error', (err) => done({ ok: false, status: null, error: describe(err, signal, timeoutMs) }));
    req.end(body);
  });
}

function describe(err: Error, signal: AbortSignal, timeoutMs: number): string {
  return signal.aborted ? `no answer within ${timeoutMs} ms` : err.message || String(err);
}
