import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { request, runJob, startApi, type RunningApi } from './api-helpers.js';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  seedFeatures,
  writeJob,
  type TestDb,
  registerModel,
  waitFor,
} from './helpers.js';

const DATE = '2026-11-20';

/** Bearer tokens: created, scoped and revoked with `prescore tokens`, enforced by a running API. */
describe('API tokens', () => {
  let db: TestDb;
  let server: RunningApi;
  const ids: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  before(async () => {
    db = await createTestDb('api_auth');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 1000, features: 4, date: DATE });
    for (const job of ['job-a', 'job-b']) {
      writeJob(db, jobSpec(job, 'lin@champion', 'feats', featureNames(4)));
      await runJob(db, job, DATE);
    }
    server = await startApi(db);
  });
  after(async () => {
    await server?.close();
    await db.drop();
  });

  const get = (job: string, token?: string, headers: Record<string, string> = {}) =>
    request<{ error?: string; runId?: string }>(server.base, `/v1/predictions/${job}/7`, { token, headers });
  const post = (job: string, token?: string) =>
    request<{ error?: string; predictions?: unknown[] }>(server.base, `/v1/predictions/${job}`, { body: { keys: ['7'] }, token });

  async function create(name: string, jobs: string[] = []): Promise<void> {
    const r = await cli(db, ['tokens', 'create', '--name', name, ...jobs.flatMap((j) => ['--job', j])]);
    assert.equal(r.code, 0, r.stderr);
    const token = r.stdout.trim();
    assert.match(token, /^psk_[A-Za-z0-9_-]{43}$/);
    assert.match(r.stderr, /shown only this once/);
    secrets[name] = token;
    const { rows } = await db.pool.query<{ id: string; sha256: string }>(
      'SELECT id::text, sha256 FROM prescore.api_tokens WHERE name = $1',
      [name],
    );
    assert.equal(rows[0]!.sha256, crypto.createHash('sha256').update(token).digest('hex'));
    ids[name] = rows[0]!.id;
  }

  test('with no token defined the API is open', async () => {
    assert.equal((await get('job-a')).status, 200);
    assert.equal((await post('job-b')).status, 200);
  });

  test('once a token exists, /v1 and /metrics need it: 401 without or with a wrong one; /healthz and a bare /readyz stay open', async () => {
    await create('all');
    await waitFor('the API to require the new token', async () => (await get('job-a')).status === 401, 2000);
    const denied = [
      await get('job-a'),
      await get('job-a', 'psk_wrong'),
      await get('job-a', undefined, { authorization: `Basic ${Buffer.from(`x:${secrets.all}`).toString('base64')}` }),
      await get('job-a', undefined, { authorization: `Bearer${secrets.all}` }),
      await post('job-b'),
      await request<{ error?: string }>(server.base, '/v1/nothing-here'),
      await request<{ error?: string }>(server.base, '/v1/predictions/job-a/7', { method: 'DELETE' }),
      await request<{ error?: string }>(server.base, '/metrics'),
    ];
    for (const r of denied) {
      assert.equal(r.status, 401, r.text);
      assert.deepEqual(Object.keys(r.body), ['error']);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
      assert.ok(!r.text.includes('score'), 'no data without a token');
    }
    assert.equal((await get('job-a', secrets.all)).status, 200);
    assert.equal((await get('job-b', undefined, { authorization: `bearer   ${secrets.all}` })).status, 200);
    assert.equal((await post('job-b', secrets.all)).status, 200);
    assert.equal((await request(server.base, '/healthz')).status, 200);
    // Readiness for probes without a token, but nothing that names the database.
    const ready = await request(server.base, '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { ready: true });
    assert.equal((await request(server.base, '/readyz', { token: secrets.all })).status, 200);
    const metrics = await request(server.base, '/metrics', { token: secrets.all });
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /prescore_http_requests_total/);
  });

  test('a token scoped to jobs gets 403 for the others', async () => {
    await create('only-a', ['job-a']);
    await waitFor('the scoped token should be known', async () => (await get('job-a', secrets['only-a'])).status === 200, 2000);
    assert.equal((await post('job-a', secrets['only-a'])).status, 200);
    for (const r of [
      await get('job-b', secrets['only-a']),
      await post('job-b', secrets['only-a']),
      await get('job-c', secrets['only-a']),
    ]) {
      assert.equal(r.status, 403, r.text);
      assert.match(r.body.error!, /^this token may not read job "job-[bc]"$/);
      assert.ok(!r.text.includes(ids['only-a']!), 'a 403 does not name the token');
    }
    // Metrics name every job: a token for some jobs may not read them.
    assert.equal((await request(server.base, '/metrics', { token: secrets['only-a'] })).status, 403);
  });

  test('tokens list never shows a secret', async () => {
    const json = await cli(db, ['tokens', 'list', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const list = JSON.parse(json.stdout) as Record<string, unknown>[];
    assert.deepEqual(
      list.map((t) => [t.id, t.name, t.jobs, t.revokedAt]),
      [
        [ids.all, 'all', null, null],
        [ids['only-a'], 'only-a', ['job-a'], null],
      ],
    );
    assert.deepEqual(Object.keys(list[0]!).sort(), ['createdAt', 'id', 'jobs', 'name', 'revokedAt']);
    const table = await cli(db, ['tokens', 'list']);
    assert.equal(table.code, 0, table.stderr);
    for (const out of [json.stdout, table.stdout]) {
      for (const secret of Object.values(secrets)) {
        assert.ok(!out.includes(secret), 'a secret was printed');
        assert.ok(!out.includes(crypto.createHash('sha256').update(secret).digest('hex')), 'a digest was printed');
      }
    }
  });

  test('a revoked token is refused within a second or two', async () => {
    const r = await cli(db, ['tokens', 'revoke', ids.all!]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `revoked token ${ids.all}`);
    await waitFor('the revoked token to be refused', async () => (await get('job-a', secrets.all)).status === 401, 2000);
    assert.equal((await get('job-a', secrets['only-a'])).status, 200, 'the other token still works');
    const again = await cli(db, ['tokens', 'revoke', ids.all!]);
    assert.equal(again.code, 0);
    assert.equal(again.stdout.trim(), `token ${ids.all} was already revoked`);
    const listed = JSON.parse((await cli(db, ['tokens', 'list', '--json'])).stdout) as { id: string; revokedAt: string | null }[];
    assert.ok(listed.find((t) => t.id === ids.all)!.revokedAt);
  });

  test('bad input to the tokens commands is refused', async () => {
    const cases: [string[], RegExp][] = [
      [['tokens', 'revoke', '999'], /^error: token 999 does not exist/],
      [['tokens', 'revoke', 'abc'], /^error: token id must be a number \(got "abc"\)/],
      [['tokens', 'create', '--job', 'Bad Job'], /^error: --job "Bad Job" must match \[a-z0-9\]/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(db, args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.lastError, message);
    }
  });

  test('with every token revoked the API stays closed: revoking the last token opens nothing', async () => {
    const r = await cli(db, ['tokens', 'revoke', ids['only-a']!]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(
      'the revoked token should be refused',
      async () => (await get('job-a', secrets['only-a'])).status === 401,
      2000,
    );
    await sleep(300);
    for (const res of [await get('job-a'), await get('job-b'), await post('job-b'), await request(server.base, '/metrics')]) {
      assert.equal(res.status, 401, res.text);
    }
    // A restarted server (fresh memory) is closed too: the database remembers tokens existed.
    await server.close();
    server = await startApi(db);
    assert.equal((await request(server.base, '/v1/predictions/job-a/7')).status, 401);
  });
});
