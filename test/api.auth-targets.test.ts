import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request, runJob, startApi, type RunningApi } from './api-helpers.js';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  seedFeatures,
  waitFor,
  writeJob,
  type TestDb,
  registerModel,
} from './helpers.js';

const DATE = '2026-11-20';

interface RawResponse {
  status: number;
  text: string;
}

/** One HTTP/1.1 request written byte for byte, so the request target can be any form. */
function raw(base: string, head: string, body = ''): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('close', () => resolve({ status: 0, text: Buffer.concat(chunks).toString('utf8') }));
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
    const length = body ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` : '';
    // write, not end: a half-closed socket makes node drop a response still being computed.
    socket.write(`${head}\r\n${length}\r\n${body}`);
  });
}

/** A route pattern filled with a job, a key and a run of that job. */
function concrete(url: string, job: string, runs: Map<string, string>): string {
  return url
    .replace(':job', job)
    .replace(':key', '7')
    .replace(':id', runs.get(job) ?? '1')
    .replace(':file', 'app.js');
}

/** A route that lists what the token may see (no job or run in its path): scoped by the token, not refused. */
function isListing(url: string): boolean {
  return !url.includes(':');
}

/**
 * Every way one path may be written as a request target: origin-form, absolute-form, doubled
 * and dot segments, percent-encoded slashes and letters, an empty query, other case.
 */
function targets(path: string): string[] {
  const rest = path.slice(1);
  return [
    path,
    `http://x${path}`,
    `http://x:1${path}`,
    `HTTP://evil.example${path}`,
    `//${rest}`,
    `///${rest}`,
    `/v1/..${path}`,
    `/./${rest}`,
    path.replace('/v1/', '/v1%2F'),
    path.replace(/\//g, '%2F'),
    path.replace('/v1/', '/%76%31/'),
    path.toUpperCase(),
    `${path}?`,
    `${path}?#`,
    `${path}/`,
    `${path};x`,
    `*`,
  ];
}

/**
 * Authentication is decided on the route fastify matched, so no spelling of a request target
 * reaches data without a token. The routes come from the server itself: a route added later
 * is covered without editing this file.
 */
describe('API auth: every route, every form of request target', () => {
  let db: TestDb;
  let server: RunningApi;
  let onlyA = '';
  const runs = new Map<string, string>();
  before(async () => {
    db = await createTestDb('api_auth_targets');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 100, features: 4, date: DATE });
    for (const job of ['job-a', 'job-b']) {
      writeJob(db, jobSpec(job, 'lin@champion', 'feats', featureNames(4)));
      runs.set(job, await runJob(db, job, DATE));
    }
    server = await startApi(db);
    const r = await cli(db, ['tokens', 'create', '--job', 'job-a']);
    assert.equal(r.code, 0, r.stderr);
    onlyA = r.stdout.trim();
    await waitFor('tokens to be enforced', async () => (await request(server.base, '/v1/predictions/job-a/7')).status === 401);
  });
  after(async () => {
    await server?.close();
    await db?.drop();
  });

  function leaks(r: RawResponse): boolean {
    return /"score"|"predictions"|prescore_http|"runId"|127\.0\.0\.1/.test(r.text);
  }

  test('the server lists its routes, and only /healthz, /readyz and the dashboard page are public', () => {
    const byUrl = new Map(server.api.routes.map((r) => [`${r.method} ${r.url}`, r.access]));
    assert.equal(byUrl.get('GET /v1/predictions/:job/:key'), 'data');
    assert.equal(byUrl.get('POST /v1/predictions/:job'), 'data');
    assert.equal(byUrl.get('GET /metrics'), 'ops');
    const open = server.api.routes.filter((r) => r.access === 'public').map((r) => r.url);
    assert.deepEqual([...new Set(open)].sort(), ['/healthz', '/readyz', '/ui', '/ui/:file']);
    assert.equal(byUrl.get('GET /v1/jobs'), 'data');
    assert.equal(byUrl.get('GET /v1/runs'), 'data');
    assert.equal(byUrl.get('GET /v1/runs/:id/report'), 'data');
  });

  test('absolute-form targets (the bypass that was) get 401 for GET and POST', async () => {
    const get = await raw(server.base, 'GET http://x/v1/predictions/job-a/7 HTTP/1.1\r\nHost: x\r\nConnection: close');
    assert.equal(get.status, 401, get.text);
    const body = JSON.stringify({ keys: ['7'] });
    const post = await raw(server.base, 'POST http://x/v1/predictions/job-a HTTP/1.1\r\nHost: x\r\nConnection: close', body);
    assert.equal(post.status, 401, post.text);
  });

  test('without a token, no route answers data under any request target', async () => {
    let tried = 0;
    for (const route of server.api.routes) {
      if (route.access === 'public') continue;
      for (const target of targets(concrete(route.url, 'job-a', runs))) {
        for (const version of ['HTTP/1.1', 'HTTP/1.0']) {
          const body = route.method === 'POST' ? JSON.stringify({ keys: ['7'] }) : '';
          const r = await raw(server.base, `${route.method} ${target} ${version}\r\nHost: x\r\nConnection: close`, body);
          tried++;
          assert.ok(r.status >= 400 && r.status < 500, `${route.method} ${target} ${version}: ${r.status}\n${r.text}`);
          assert.ok(!leaks(r), `${route.method} ${target}: ${r.text}`);
        }
      }
    }
    assert.ok(tried > 60, `tried ${tried}`);
  });

  test('a token for job-a reads job-a, and no request target lets it read job-b or the metrics', async () => {
    const auth = `Authorization: Bearer ${onlyA}`;
    const ok = await raw(server.base, `GET http://x/v1/predictions/job-a/7 HTTP/1.1\r\nHost: x\r\n${auth}\r\nConnection: close`);
    assert.equal(ok.status, 200, ok.text);
    let listed = 0;
    for (const route of server.api.routes) {
      if (route.access === 'public') continue;
      const path = concrete(route.url, 'job-b', runs);
      // A listing asked for job-b by name is refused like a route naming it.
      const all = isListing(route.url) ? [...targets(path), `${path}?job=job-b`] : targets(path);
      for (const target of all) {
        const body = route.method === 'POST' ? JSON.stringify({ keys: ['7'] }) : '';
        const r = await raw(server.base, `${route.method} ${target} HTTP/1.1\r\nHost: x\r\n${auth}\r\nConnection: close`, body);
        if (isListing(route.url) && r.status === 200) {
          // Answered, but only with job-a's things.
          listed++;
          assert.ok(!/job-b/.test(r.text) && !r.text.includes(`"${runs.get('job-b')}"`), `${route.method} ${target}: ${r.text}`);
          continue;
        }
        assert.ok(r.status >= 400 && r.status < 500, `${route.method} ${target}: ${r.status}\n${r.text}`);
        assert.ok(!leaks(r), `${route.method} ${target}: ${r.text}`);
      }
    }
    assert.ok(listed > 0, 'the listings answer a scoped token');
  });

  test('public routes say nothing about the database or the jobs', async () => {
    for (const target of [...targets('/readyz'), ...targets('/healthz'), ...targets('/ui'), ...targets('/ui/app.js')]) {
      const r = await raw(server.base, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close`);
      assert.ok(!leaks(r) && !/job-a|postgres|migrations/.test(r.text.split('\r\n\r\n')[1] ?? ''), `${target}: ${r.text}`);
    }
  });
});

describe('API auth modes and the ops port', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('api_auth_modes');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 10, features: 4, date: DATE });
    writeJob(db, jobSpec('job-a', 'lin@champion', 'feats', featureNames(4)));
    await runJob(db, 'job-a', DATE);
  });
  after(async () => db?.drop());

  test('auth "token" is closed before any token exists; auth "none" is open with tokens', async () => {
    const closed = await startApi(db, { auth: 'token' });
    try {
      assert.equal((await request(closed.base, '/v1/predictions/job-a/1')).status, 401);
      assert.equal((await request(closed.base, '/metrics')).status, 401);
    } finally {
      await closed.close();
    }
    const r = await cli(db, ['tokens', 'create']);
    assert.equal(r.code, 0, r.stderr);
    const open = await startApi(db, { auth: 'none' });
    try {
      assert.equal((await request(open.base, '/v1/predictions/job-a/1')).status, 200);
    } finally {
      await open.close();
    }
  });

  test('the ops app serves /metrics and a detailed /readyz without a token, and no data', async () => {
    const server = await startApi(db);
    try {
      assert.equal((await request(server.base, '/metrics')).status, 401);
      const ops = await server.api.ops.listen({ port: 0, host: '127.0.0.1' });
      const metrics = await request(ops, '/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.text, /prescore_served_run_age_seconds\{prescore_job="job-a"\}/);
      assert.deepEqual((await request(ops, '/readyz')).body, { ready: true });
      assert.equal((await request(ops, '/v1/predictions/job-a/1')).status, 404);
    } finally {
      await server.close();
    }
  });
});
