import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { silentLogger } from '../src/log.js';
import { Dispatcher } from '../src/notify/dispatcher.js';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  servedPredictions,
  startCli,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';

const [D1, D2] = ['2026-09-01', '2026-09-02'];
const ROWS = 3000;

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/**
 * A real webhook receiver on 127.0.0.1. Paths choose its behaviour: `/flaky*` answers 500
 * twice then 200; `/hang*` never answers the first request, then 200; anything else 200.
 */
async function startReceiver(): Promise<{ base: string; got: Received[]; close(): Promise<void> }> {
  const got: Received[] = [];
  const seen = new Map<string, number>();
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (d: Buffer) => (data += d.toString()));
    req.on('end', () => {
      const path = req.url ?? '/';
      const n = (seen.get(path) ?? 0) + 1;
      seen.set(path, n);
      got.push({ path, headers: req.headers, body: JSON.parse(data) as Record<string, unknown> });
      if (path.startsWith('/flaky') && n <= 2) return void res.writeHead(500).end('busy');
      if (path.startsWith('/hang') && n === 1) return; // accepted, never answered
      res.writeHead(200).end('ok');
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    got,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on: a receiver that is down. */
async function deadUrl(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}/dead`;
}

interface OutboxRow {
  event: string;
  url: string;
  attempts: number;
  delivered: boolean;
  failed: boolean;
  last_status: number | null;
  last_error: string | null;
}

async function outbox(db: TestDb, runId: string): Promise<OutboxRow[]> {
  const { rows } = await db.pool.query<OutboxRow>(
    `SELECT event, url, attempts, delivered_at IS NOT NULL AS delivered, failed_at IS NOT NULL AS failed, last_status, last_error
       FROM prescore.notifications WHERE run_id = $1::bigint ORDER BY id`,
    [runId],
  );
  return rows;
}

// Short bounds so retries happen within the test; `prescore run` waits for its events.
const FAST = {
  PRESCORE_NOTIFY_TIMEOUT_MS: '500',
  PRESCORE_NOTIFY_BACKOFF_MS: '50',
  PRESCORE_NOTIFY_ATTEMPTS: '3',
  PRESCORE_NOTIFY_FLUSH_MS: '20000',
};

async function run(db: TestDb, job: string, date: string): Promise<{ code: number | null; id: string; stderr: string }> {
  const r = await cli(db, ['run', job, '--date', date, '--json'], FAST);
  const id = (JSON.parse(r.stdout || '{}') as { id?: string }).id ?? /run (\d+)/.exec(r.stderr)?.[1] ?? '';
  return { code: r.code, id, stderr: r.stderr };
}

/** Webhook notifications: events written with the status change, posted from an outbox. */
describe('notifications', () => {
  let db: TestDb;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const features = featureNames(4);
  before(async () => {
    db = await createTestDb('notify');
    receiver = await startReceiver();
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: D1 });
    await seedFeatures(db.pool, 'feats', { rows: ROWS / 3, features: 4, date: D2, salt: 1 });
  });
  after(async () => {
    await receiver?.close();
    await db?.drop();
  });

  test('a published run posts run.published with its job, run, date, status and counts', async () => {
    writeJob(db, jobSpec('pub', 'lin@champion', 'feats', features, { notify: [`${receiver.base}/ok`] }));
    const r = await run(db, 'pub', D1);
    assert.equal(r.code, 0, r.stderr);
    const got = receiver.got.filter((g) => g.path === '/ok');
    assert.equal(got.length, 1);
    const { body, headers } = got[0]!;
    assert.equal(headers['content-type'], 'application/json');
    assert.equal(headers['x-prescore-event'], 'run.published');
    assert.deepEqual(
      { ...body, at: undefined },
      { event: 'run.published', job: 'pub', runId: r.id, date: D1, status: 'published', rows: ROWS, rejected: 0, at: undefined },
    );
    assert.ok(!Number.isNaN(Date.parse(String(body.at))), `at is a timestamp: ${String(body.at)}`);
    const rows = await outbox(db, r.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.delivered, true);
    assert.equal(rows[0]!.attempts, 1);
    assert.equal(rows[0]!.last_status, 200);
  });

  test('a failing run posts run.failed with its error', async () => {
    await db.pool.query(`CREATE TABLE badfeats AS SELECT * FROM feats WHERE as_of = $1::date`, [D1]);
    await db.pool.query(`UPDATE badfeats SET f0 = NULL WHERE id <= 10`);
    writeJob(db, jobSpec('bad', 'lin@champion', 'badfeats', features, { maxRejectRate: 0, notify: `${receiver.base}/failed` }));
    const r = await run(db, 'bad', D1);
    assert.equal(r.code, 2, r.stderr);
    const got = receiver.got.filter((g) => g.path === '/failed');
    assert.equal(got.length, 1, r.stderr);
    const body = got[0]!.body;
    assert.equal(body.event, 'run.failed');
    assert.equal(body.status, 'failed');
    assert.equal(body.job, 'bad');
    assert.equal(body.date, D1);
    assert.equal(body.rows, ROWS - 10);
    assert.equal(body.rejected, 10);
    assert.match(String(body.error), /10 of 3000 rows rejected .* above maxRejectRate 0/);
    assert.deepEqual(
      (await outbox(db, String(body.runId))).map((o) => [o.event, o.delivered]),
      [['run.failed', true]],
    );
  });

  test('a held run posts run.held with the gates it broke', async () => {
    writeJob(
      db,
      jobSpec('gated', 'lin@champion', 'feats', features, {
        gates: { rowCountChange: 0.3 },
        notify: [`${receiver.base}/gated`],
      }),
    );
    assert.equal((await run(db, 'gated', D1)).code, 0);
    const held = await run(db, 'gated', D2);
    assert.equal(held.code, 1, held.stderr);
    const events = receiver.got.filter((g) => g.path === '/gated').map((g) => g.body);
    assert.deepEqual(
      events.map((e) => e.event),
      ['run.published', 'run.held'],
    );
    const body = events[1]!;
    assert.equal(body.runId, held.id);
    assert.equal(body.status, 'held');
    assert.equal(body.rows, ROWS / 3);
    const gates = body.gates as { gate: string; action: string }[];
    assert.ok(
      gates.some((g) => g.gate === 'rowCountChange' && g.action === 'block'),
      JSON.stringify(gates),
    );
    assert.match(String(body.heldReason), /rowCountChange/);
  });

  test('a receiver answering 500 twice gets the event on the third attempt', async () => {
    writeJob(db, jobSpec('flaky', 'lin@champion', 'feats', features, { notify: [`${receiver.base}/flaky`] }));
    const r = await run(db, 'flaky', D1);
    assert.equal(r.code, 0, r.stderr);
    const got = receiver.got.filter((g) => g.path === '/flaky');
    assert.equal(got.length, 3);
    // The same delivery each time, so a receiver can tell a repeat.
    assert.equal(new Set(got.map((g) => g.headers['x-prescore-delivery'])).size, 1);
    assert.ok(got.every((g) => g.body.event === 'run.published' && g.body.runId === r.id));
    const [row] = await outbox(db, r.id);
    assert.deepEqual(
      { attempts: row!.attempts, delivered: row!.delivered, status: row!.last_status, error: row!.last_error },
      { attempts: 3, delivered: true, status: 200, error: 'HTTP 500' },
    );
  });

  test('a receiver that never answers is timed out and the event is posted again', async () => {
    writeJob(db, jobSpec('hang', 'lin@champion', 'feats', features, { notify: [`${receiver.base}/hang`] }));
    const r = await run(db, 'hang', D1);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(receiver.got.filter((g) => g.path === '/hang').length, 2);
    const [row] = await outbox(db, r.id);
    assert.equal(row!.delivered, true);
    assert.equal(row!.attempts, 2);
    assert.equal(row!.last_error, 'no answer within 500 ms');
  });

  test('a dead receiver changes nothing stored: the run publishes the same predictions; the event is given up, with the error', async () => {
    const dead = await deadUrl();
    writeJob(db, jobSpec('dead', 'lin@champion', 'feats', features, { notify: [dead, `${receiver.base}/alive`] }));
    const r = await run(db, 'dead', D1);
    assert.equal(r.code, 0, r.stderr);
    const mine = await servedPredictions(db.pool, 'dead', D1);
    const reference = await servedPredictions(db.pool, 'pub', D1);
    assert.equal(mine.runId, r.id);
    assert.equal(mine.rows.size, ROWS);
    assert.deepEqual(mine.rows, reference.rows);
    const rows = await outbox(db, r.id);
    assert.equal(rows.length, 2);
    const [deadRow, aliveRow] = [rows.find((o) => o.url === dead)!, rows.find((o) => o.url !== dead)!];
    assert.deepEqual([deadRow.failed, deadRow.delivered, deadRow.attempts], [true, false, 3]);
    assert.match(deadRow.last_error ?? '', /ECONNREFUSED/);
    assert.equal(aliveRow.delivered, true);
  });

  test('a worker posts the events of the queue runs it finishes', async () => {
    writeJob(db, jobSpec('queued', 'lin@champion', 'feats', features, { notify: [`${receiver.base}/queued`] }));
    const worker = startCli(db, ['worker', '--concurrency', '2'], FAST);
    try {
      const r = await cli(db, ['run', 'queued', '--date', D1, '--queue', '--no-wait', '--json'], FAST);
      assert.equal(r.code, 0, r.stderr);
      const id = (JSON.parse(r.stdout) as { id: string }).id;
      const got = await waitFor('the worker posts run.published', () =>
        receiver.got.find((g) => g.path === '/queued' && g.body.runId === id),
      );
      assert.equal(got.body.event, 'run.published');
      assert.equal(got.body.rows, ROWS);
    } finally {
      worker.kill('SIGTERM');
      await worker.done;
    }
  });

  test('two dispatchers sharing the outbox post each event once', async () => {
    await db.pool.query(
      `INSERT INTO prescore.notifications (run_id, event, url, payload)
       SELECT 424242, 'run.published', $1, jsonb_build_object('n', g) FROM generate_series(1, 40) g`,
      [`${receiver.base}/shared`],
    );
    const config = { timeoutMs: 2000, attempts: 3, backoffMs: 50, flushMs: 20_000 };
    const pools = [new pg.Pool({ connectionString: db.url, max: 2 }), new pg.Pool({ connectionString: db.url, max: 2 })];
    try {
      const dispatchers = pools.map((p) => new Dispatcher(p, config, silentLogger));
      await Promise.all(dispatchers.map((d) => d.flush(['424242'])));
      await Promise.all(dispatchers.map((d) => d.close()));
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
    const got = receiver.got.filter((g) => g.path === '/shared');
    assert.equal(got.length, 40);
    assert.equal(new Set(got.map((g) => g.body.n)).size, 40);
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM prescore.notifications WHERE run_id = 424242 AND delivered_at IS NOT NULL AND attempts = 1`,
    );
    assert.equal(rows[0]!.n, 40);
  });

  test('jobs validate refuses a notify URL that is not http(s), naming the field', async () => {
    writeJob(db, jobSpec('badurl', 'lin@champion', 'feats', features, { notify: ['https://ok.example/x', 'ftp://files/x'] }));
    const r = await cli(db, ['jobs', 'validate', 'badurl']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /notify\[1\]: must be an http:\/\/ or https:\/\/ URL \(got "ftp:\/\/files\/x"\)/);
    writeJob(db, jobSpec('badurl', 'lin@champion', 'feats', features, { notify: 'hooks.example.com' }));
    const r2 = await cli(db, ['jobs', 'validate', 'badurl']);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /notify: must be an http:\/\/ or https:\/\/ URL/);
  });
});
