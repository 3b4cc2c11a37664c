import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { assertCutOff, request, runJob, SLOW_REQUESTS, startApi, type RunningApi } from './api-helpers.js';
import { cli, createTestDb, featureNames, jobSpec, seedFeatures, writeJob, type TestDb, registerModel } from './helpers.js';

const DATE = '2026-11-20';

interface Case {
  what: string;
  path: string;
  method?: string;
  raw?: string;
  headers?: Record<string, string>;
  status: number;
  error: RegExp;
}

const keys = (n: number) => Array.from({ length: n }, (_, i) => String(i + 1));
const json = (v: unknown) => JSON.stringify(v);

const CASES: Case[] = [
  // Routes and methods
  { what: 'unknown route', path: '/v2/predictions/errs/1', status: 404, error: /no route GET \/v2\/predictions\/errs\/1/ },
  { what: 'root', path: '/', status: 404, error: /no route GET \// },
  {
    what: 'PUT on a GET route',
    path: '/v1/predictions/errs/1',
    method: 'PUT',
    status: 405,
    error: /PUT is not allowed.*use GET/,
  },
  { what: 'DELETE on the POST route', path: '/v1/predictions/errs', method: 'DELETE', status: 405, error: /use POST/ },
  { what: 'GET on the POST route', path: '/v1/predictions/errs', status: 405, error: /GET is not allowed/ },
  { what: 'POST on /metrics', path: '/metrics', method: 'POST', status: 405, error: /use GET/ },
  { what: 'too deep', path: '/v1/predictions/errs/1/2', status: 404, error: /no route/ },
  // Path parameters
  { what: 'job name in capitals', path: '/v1/predictions/Errs/1', status: 400, error: /"Errs" is not a job name/ },
  { what: 'job name with a quote', path: "/v1/predictions/err's/1", status: 400, error: /is not a job name/ },
  { what: 'empty key', path: '/v1/predictions/errs/', status: 400, error: /the key is empty/ },
  { what: 'key of 513 bytes', path: `/v1/predictions/errs/${'k'.repeat(513)}`, status: 400, error: /longer than 512 bytes/ },
  {
    what: 'key of 300 "€" (900 bytes)',
    path: `/v1/predictions/errs/${encodeURIComponent('€'.repeat(300))}`,
    status: 400,
    error: /longer than 512 bytes/,
  },
  {
    what: 'key far too long for the router',
    path: `/v1/predictions/errs/${'k'.repeat(5000)}`,
    status: 414,
    error: /^the URL is too long/,
  },
  { what: 'key with a NUL', path: '/v1/predictions/errs/a%00b', status: 400, error: /NUL/ },
  { what: 'broken percent-encoding', path: '/v1/predictions/errs/%E0%A4%A', status: 400, error: /not a valid url component/ },
  // asOf
  {
    what: 'asOf not a date',
    path: '/v1/predictions/errs/1?asOf=yesterday',
    status: 400,
    error: /asOf: date "yesterday" is not a calendar date/,
  },
  { what: 'asOf 30 February', path: '/v1/predictions/errs/1?asOf=2026-02-30', status: 400, error: /is not a calendar date/ },
  {
    what: 'asOf twice',
    path: '/v1/predictions/errs/1?asOf=2026-11-20&asOf=2026-11-21',
    status: 400,
    error: /asOf must be one date/,
  },
  {
    what: 'asOf misspelt as a query parameter',
    path: '/v1/predictions/errs/1?asof=2026-11-20',
    status: 400,
    error: /unknown query parameter "asof": the only parameters are asOf/,
  },
  {
    what: 'a query parameter on POST',
    path: '/v1/predictions/errs?asOf=2026-11-20',
    raw: '{"keys":["1"]}',
    status: 400,
    error: /unknown query parameter "asOf": the only ones are variant and wait; keys, asOf and fallback go in the JSON body/,
  },
  // Bodies
  {
    what: 'a field twice',
    path: '/v1/predictions/errs',
    raw: '{"keys":["1"],"keys":["2"]}',
    status: 400,
    error: /the field "keys" appears twice in the body/,
  },
  {
    what: 'asOf twice, once escaped',
    path: '/v1/predictions/errs',
    raw: '{"keys":["1"], "asOf":"2026-11-20" ,"\\u0061sOf" : "2026-11-21"}',
    status: 400,
    error: /the field "asOf" appears twice/,
  },
  { what: 'invalid JSON', path: '/v1/predictions/errs', raw: '{"keys": [', status: 400, error: /the body is not valid JSON/ },
  { what: 'empty JSON body', path: '/v1/predictions/errs', raw: '', status: 400, error: /body/ },
  { what: 'no body at all', path: '/v1/predictions/errs', method: 'POST', status: 400, error: /the body must be a JSON object/ },
  {
    what: 'text/plain body',
    path: '/v1/predictions/errs',
    raw: 'keys=1',
    headers: { 'content-type': 'text/plain' },
    status: 415,
    error: /Content-Type: application\/json/,
  },
  { what: 'array body', path: '/v1/predictions/errs', raw: '["1"]', status: 400, error: /the body must be a JSON object/ },
  { what: 'null body', path: '/v1/predictions/errs', raw: 'null', status: 400, error: /the body must be a JSON object/ },
  {
    what: 'no keys',
    path: '/v1/predictions/errs',
    raw: '{}',
    status: 400,
    error: /keys must be an array of 1 to 1000 strings \(got none\)/,
  },
  { what: 'keys not an array', path: '/v1/predictions/errs', raw: '{"keys":"1"}', status: 400, error: /got string/ },
  { what: 'zero keys', path: '/v1/predictions/errs', raw: '{"keys":[]}', status: 400, error: /got 0 keys/ },
  { what: '1001 keys', path: '/v1/predictions/errs', raw: json({ keys: keys(1001) }), status: 400, error: /got 1001 keys/ },
  {
    what: 'a numeric key',
    path: '/v1/predictions/errs',
    raw: '{"keys":["1",2]}',
    status: 400,
    error: /keys\[1\] must be a string \(got number\)/,
  },
  {
    what: 'a null key',
    path: '/v1/predictions/errs',
    raw: '{"keys":[null]}',
    status: 400,
    error: /keys\[0\] must be a string \(got null\)/,
  },
  { what: 'an empty key', path: '/v1/predictions/errs', raw: '{"keys":["1",""]}', status: 400, error: /keys\[1\] is empty/ },
  {
    what: 'a long key',
    path: '/v1/predictions/errs',
    raw: json({ keys: ['x'.repeat(513)] }),
    status: 400,
    error: /keys\[0\] is longer than 512 bytes/,
  },
  {
    what: 'a NUL in a key',
    path: '/v1/predictions/errs',
    raw: '{"keys":["a\\u0000"]}',
    status: 400,
    error: /keys\[0\] contains a NUL/,
  },
  {
    what: 'asOf a number',
    path: '/v1/predictions/errs',
    raw: '{"keys":["1"],"asOf":20261120}',
    status: 400,
    error: /asOf must be one date.*got number/,
  },
  { what: 'asOf null', path: '/v1/predictions/errs', raw: '{"keys":["1"],"asOf":null}', status: 400, error: /got null/ },
  {
    what: 'asOf not a date (body)',
    path: '/v1/predictions/errs',
    raw: '{"keys":["1"],"asOf":"2026-13-01"}',
    status: 400,
    error: /not a calendar date/,
  },
  {
    what: 'a misspelt field',
    path: '/v1/predictions/errs',
    raw: '{"keys":["1"],"asof":"2026-11-20"}',
    status: 400,
    error: /unknown field "asof"/,
  },
  {
    what: '__proto__ field',
    path: '/v1/predictions/errs',
    raw: '{"keys":["1"],"__proto__":{"x":1}}',
    status: 400,
    error: /unknown field "__proto__"/,
  },
  { what: 'bad job name (POST)', path: '/v1/predictions/UPPER', raw: '{"keys":["1"]}', status: 400, error: /is not a job name/ },
  {
    what: 'body over 1 MiB',
    path: '/v1/predictions/errs',
    raw: json({ keys: ['1'], pad: 'x'.repeat(1024 * 1024) }),
    status: 413,
    error: /larger than 1048576 bytes/,
  },
];

/** Every malformed request gets a 4xx with {"error": "..."}: never a 500, never a stack trace. */
describe('malformed requests', () => {
  let db: TestDb;
  let server: RunningApi;
  before(async () => {
    db = await createTestDb('api_errors');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 1000, features: 4, date: DATE });
    writeJob(db, jobSpec('errs', 'lin@champion', 'feats', featureNames(4)));
    await runJob(db, 'errs', DATE);
    server = await startApi(db);
  });
  after(async () => {
    await server?.close();
    await db.drop();
  });

  function assertClean(status: number, text: string, headers: Headers, what: string): string {
    assert.ok(status >= 400 && status < 500, `${what}: status ${status} ${text}`);
    assert.match(headers.get('content-type') ?? '', /^application\/json/, what);
    const body = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body), ['error'], `${what}: ${text}`);
    assert.equal(typeof body.error, 'string');
    assert.ok(!/\bat .*\.(js|ts):\d+/.test(text) && !text.includes('node_modules'), `${what}: a stack trace leaked: ${text}`);
    return body.error as string;
  }

  for (const c of CASES) {
    test(c.what, async () => {
      const r = await request(server.base, c.path, {
        method: c.method,
        raw: c.raw,
        headers: { ...(c.raw !== undefined ? { 'content-type': 'application/json' } : {}), ...c.headers },
      });
      assert.equal(r.status, c.status, `${c.what}: ${r.text}`);
      assert.match(assertClean(r.status, r.text, r.headers, c.what), c.error);
    });
  }

  test('a well-formed request still answers after all that', async () => {
    assert.equal((await request(server.base, '/v1/predictions/errs/1')).status, 200);
    assert.equal((await request(server.base, '/v1/predictions/errs', { body: { keys: keys(1000), asOf: DATE } })).status, 200);
  });

  test('random bodies and paths: only 2xx/4xx, always JSON', async () => {
    const pieces = [
      '{',
      '}',
      '[',
      ']',
      '"keys"',
      ':',
      ',',
      '"1"',
      '1',
      'null',
      '"asOf"',
      '"2026-11-20"',
      'true',
      '\\u0000',
      '"',
      ' ',
      'é',
    ];
    for (let i = 0; i < 300; i++) {
      const raw = Array.from({ length: 1 + (i % 12) }, () => pieces[crypto.randomInt(pieces.length)]).join('');
      const r = await request(server.base, '/v1/predictions/errs', { raw, headers: { 'content-type': 'application/json' } });
      if (r.status !== 200) assertClean(r.status, r.text, r.headers, `body ${raw}`);
      const seg = encodeURIComponent(crypto.randomBytes(1 + (i % 40)).toString('latin1'));
      const g = await request(server.base, `/v1/predictions/errs/${seg}?asOf=${encodeURIComponent(raw)}`);
      if (g.status !== 200) assertClean(g.status, g.text, g.headers, `key ${seg} asOf ${raw}`);
    }
  });

  test('a well-formed body with nested look-alikes of a field is no duplicate', async () => {
    const r = await request(server.base, '/v1/predictions/errs', {
      raw: '{"keys":["keys","asOf", "a\\"keys\\":"]}',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(r.status, 200, r.text);
  });

  test('a malformed HTTP request is refused and the server keeps serving', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(new URL(server.base).port), '127.0.0.1', () =>
        socket.write('GARBAGE / HTTP/9.9\r\n\r\n'),
      );
      let data = '';
      socket.on('data', (d) => (data += d.toString()));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400/);
    assert.equal((await request(server.base, '/healthz')).status, 200);
  });
});

/** A client that sends its request slowly, or never finishes it, is cut off. */
describe('slow clients', () => {
  let db: TestDb;
  let server: RunningApi;
  before(async () => {
    db = await createTestDb('api_slow');
    assert.equal((await cli(db, ['migrate'])).code, 0);
    server = await startApi(db, { requestTimeoutMs: 500 });
  });
  after(async () => {
    await server?.close();
    await db.drop();
  });

  for (const { what, partial } of SLOW_REQUESTS) {
    test(`${what}: the connection is answered 408 or closed within a few seconds`, () => assertCutOff(server.base, partial));
  }
});
