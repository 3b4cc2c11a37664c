import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request, runJob, startApi, type RunningApi } from './api-helpers.js';
import { createTestDb, featureNames, jobSpec, seedFeatures, waitFor, writeJob, type TestDb, registerModel } from './helpers.js';

const DATE = '2026-11-20';

/**
 * A TCP proxy to PostgreSQL that can stall: bytes stop flowing both ways while every socket
 * stays open, as with a hung server or a silent network partition (nothing is refused).
 */
class StallingProxy {
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private readonly server: net.Server;
  private stalled = false;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      client.pipe(upstream);
      upstream.pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      if (this.stalled) this.pause(pair);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  private pause([a, b]: [net.Socket, net.Socket]): void {
    a.unpipe(b);
    b.unpipe(a);
    a.pause();
    b.pause();
  }

  stall(): void {
    this.stalled = true;
    for (const pair of this.pairs) this.pause(pair);
  }

  resume(): void {
    this.stalled = false;
    for (const [a, b] of this.pairs) {
      a.pipe(b);
      b.pipe(a);
    }
  }

  async close(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** A database that hangs instead of failing: lookups get 503 within the timeout, and the queue is bounded. */
describe('API with a stalled database', () => {
  let db: TestDb;
  let proxy: StallingProxy;
  let server: RunningApi;
  before(async () => {
    db = await createTestDb('api_stall');
    await registerModel(db, 'lin', 'linear-float32');
    await seedFeatures(db.pool, 'feats', { rows: 1000, features: 4, date: DATE });
    writeJob(db, jobSpec('stall', 'lin@champion', 'feats', featureNames(4)));
    await runJob(db, 'stall', DATE);
    const target = new URL(db.url);
    proxy = new StallingProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const port = await proxy.listen();
    target.port = String(port);
    server = await startApi(db, { lookupTimeoutMs: 1000, maxQueuedKeys: 20 }, { url: target.toString(), timeoutMs: 1000 });
  });
  after(async () => {
    proxy?.resume();
    await server?.close();
    await proxy?.close();
    await db?.drop();
  });

  test('lookups answer before the stall', async () => {
    assert.equal((await request(server.base, '/v1/predictions/stall/1')).status, 200);
  });

  test('while the database hangs: 503 within the timeout, and requests beyond the queue bound at once', async () => {
    proxy.stall();
    const started = Date.now();
    const one = await request<{ error: string }>(server.base, '/v1/predictions/stall/2');
    const took = Date.now() - started;
    assert.equal(one.status, 503, one.text);
    assert.match(one.body.error, /the database is unavailable; retry later/);
    assert.ok(took < 3000, `answered after ${took} ms`);

    const burst = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const t = Date.now();
        const r = await request<{ error: string }>(server.base, `/v1/predictions/stall/${10 + i}`);
        return { r, ms: Date.now() - t };
      }),
    );
    for (const { r, ms } of burst) {
      assert.equal(r.status, 503, r.text);
      assert.ok(ms < 3500, `answered after ${ms} ms`);
    }
    const refused = burst.filter(({ r }) => /too many lookups are waiting/.test(r.body.error));
    assert.ok(refused.length >= 30, `${refused.length} refused at once`);
    assert.ok(Math.max(...refused.map((x) => x.ms)) < 500, 'the overflow is refused without waiting');
    const batch = await request(server.base, '/v1/predictions/stall', { body: { keys: ['1', '2', '3'] } });
    assert.equal(batch.status, 503);
  });

  test('once the database answers again, so does the API', async () => {
    proxy.resume();
    await waitFor(
      'a lookup to succeed again',
      async () => (await request(server.base, '/v1/predictions/stall/3')).status === 200,
      10_000,
    );
  });
});
