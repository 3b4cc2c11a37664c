import http from 'node:http';
import pg from 'pg';

/**
 * The baseline of `npm run bench:api`: the minimal server a backend team would write by hand,
 * node:http + a pg Pool + a prepared point lookup on the same predictions partition. One
 * query per request, no validation, no auth, no metrics. Reads DATABASE_URL, RUN_ID, JOB, PORT.
 */
const runId = process.env.RUN_ID!;
const job = process.env.JOB!;
const date = process.env.DATE!;
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL_SIZE ?? 16) });
const model = { name: process.env.MODEL_NAME!, version: Number(process.env.MODEL_VERSION) };

interface Row {
  key: string;
  score: number | null;
  label: string | null;
  outputs: number[] | null;
}

const item = (r: Row) => ({ job, key: r.key, asOf: date, runId, model, score: r.score, label: r.label, outputs: r.outputs });

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const prefix = `/v1/predictions/${job}`;
  if (req.method === 'GET' && req.url!.startsWith(prefix + '/')) {
    const key = decodeURIComponent(req.url!.slice(prefix.length + 1));
    pool
      .query<Row>({
        name: 'point',
        text: 'SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint AND key = $2',
        values: [runId, key],
      })
      .then(
        ({ rows }) => (rows[0] ? reply(res, 200, item(rows[0])) : reply(res, 404, { error: 'not found' })),
        (err: Error) => reply(res, 500, { error: err.message }),
      );
    return;
  }
  if (req.method === 'POST' && req.url === prefix) {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const keys = (JSON.parse(body) as { keys: string[] }).keys;
      pool
        .query<Row>({
          name: 'many',
          text: 'SELECT key, score, label, outputs FROM prescore.predictions WHERE run_id = $1::bigint AND key = ANY ($2::text[])',
          values: [runId, keys],
        })
        .then(
          ({ rows }) => {
            const byKey = new Map(rows.map((r) => [r.key, r]));
            reply(res, 200, {
              predictions: keys.filter((k) => byKey.has(k)).map((k) => item(byKey.get(k)!)),
              missing: keys.filter((k) => !byKey.has(k)),
            });
          },
          (err: Error) => reply(res, 500, { error: err.message }),
        );
    });
    return;
  }
  reply(res, 404, { error: 'no route' });
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const a = server.address() as { port: number };
  process.stdout.write(`listening on http://127.0.0.1:${a.port}\n`);
});
const stop = () => server.close(() => void pool.end());
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
