import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  cli,
  createTestDb,
  featureNames,
  jobSpec,
  registerModel,
  seedFeatures,
  waitFor,
  writeJob,
  type TestDb,
} from './helpers.js';
import { repoFile } from './deploy-helpers.js';
import { startWithMetrics } from './metrics-helpers.js';
import { stopAll, type Proc } from './queue.helpers.js';

const PROMETHEUS = ['/usr/bin/prometheus', 'prometheus'].find(
  (p) => spawnSync(p, ['--version'], { stdio: 'ignore' }).status === 0,
);
const DATE = '2026-11-12';
const ROWS = 4000;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A real Prometheus scraping a real `prescore worker`, asked with PromQL over its HTTP API. */
describe(
  'Prometheus scrapes a worker',
  { skip: PROMETHEUS ? false : 'prometheus is not installed (apt-get install prometheus)' },
  () => {
    let db: TestDb;
    let dir: string;
    let prometheus: ChildProcess | undefined;
    let promLog = '';
    let base: string;
    const procs: Proc[] = [];

    const query = async (promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> => {
      const r = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(5000) });
      const body = (await r.json()) as {
        status: string;
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      assert.equal(body.status, 'success', JSON.stringify(body));
      return body.data.result;
    };
    const scalar = async (promql: string): Promise<number | undefined> => {
      const result = await query(promql);
      return result[0] ? Number(result[0].value[1]) : undefined;
    };

    before(async () => {
      db = await createTestDb('metrics_prom');
      await registerModel(db, 'lin', 'linear-float32');
      await seedFeatures(db.pool, 'feats', { rows: ROWS, features: 4, date: DATE });
      writeJob(db, jobSpec('prom-job', 'lin@champion', 'feats', featureNames(4), { chunkRows: 1000 }));
      // The queue on BullMQ's PostgreSQL backend: no REDIS_URL.
      const worker = await startWithMetrics(db, ['worker', '--concurrency', '2'], { REDIS_URL: undefined });
      procs.push(worker.proc);

      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-prometheus-'));
      fs.copyFileSync(repoFile('deploy/prometheus/alerts.yml'), path.join(dir, 'alerts.yml'));
      const target = new URL(worker.url).host;
      fs.writeFileSync(
        path.join(dir, 'prometheus.yml'),
        [
          'global: { scrape_interval: 1s, evaluation_interval: 1s }',
          'rule_files: [alerts.yml]',
          'scrape_configs:',
          '  - job_name: prescore-worker',
          `    static_configs: [{ targets: ["${target}"] }]`,
          '',
        ].join('\n'),
      );
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      prometheus = spawn(
        PROMETHEUS!,
        [
          `--config.file=${path.join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${path.join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      prometheus.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
      await waitFor(
        'Prometheus to be ready',
        async () => {
          if (prometheus!.exitCode !== null) throw new Error(`prometheus exited: ${promLog}`);
          return (await fetch(`${base}/-/ready`).catch(() => undefined))?.status === 200;
        },
        30_000,
        200,
      );
    });
    after(async () => {
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((resolve) => prometheus!.once('exit', resolve));
        prometheus.kill('SIGTERM');
        await exited;
      }
      await stopAll(procs);
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
      await db?.drop();
    });

    test('PromQL over the scraped series gives the rows the run scored, the chunks, and the cluster gauges', async () => {
      await waitFor('the worker target to be up', async () => (await scalar('up{job="prescore-worker"}')) === 1, 30_000, 250);
      const r = await cli(db, ['run', 'prom-job', '--date', DATE, '--queue', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const run = JSON.parse(r.stdout) as { status: string; rowsWritten: number };
      assert.deepEqual([run.status, run.rowsWritten], ['published', ROWS]);

      const scored = await waitFor(
        'Prometheus to see every row scored',
        async () => {
          const v = await scalar('sum(prescore_rows_scored_total{prescore_job="prom-job"})');
          return v === ROWS ? v : undefined;
        },
        30_000,
        250,
      );
      assert.equal(scored, run.rowsWritten);
      assert.equal(await scalar('sum(prescore_chunks_total{prescore_job="prom-job",outcome="done"})'), ROWS / 1000);
      const batches = await scalar('sum(prescore_inference_duration_seconds_count{model="lin",model_version="1"})');
      assert.ok(batches! >= ROWS / 1000, `inference batches ${batches}`);
      // Prometheus' own `job` label is the scrape job's: prescore's label does not clash with it.
      const labels = (await query('prescore_rows_scored_total'))[0]!.metric;
      assert.equal(labels.job, 'prescore-worker');
      assert.equal(labels.prescore_job, 'prom-job');

      await waitFor(
        'the cluster gauges to show the published run',
        async () => (await scalar('prescore_runs{prescore_job="prom-job",status="published"}')) === 1,
        30_000,
        250,
      );
      const age = await scalar('prescore_last_publish_age_seconds{prescore_job="prom-job"}');
      assert.ok(age !== undefined && age >= 0 && age < 300, `last publish age ${age}`);
      assert.equal(await scalar('prescore_cluster_read_ok'), 1);
      assert.equal(await scalar('sum(prescore_queue_jobs{queue="chunks",state="waiting"})'), 0);
      assert.ok((await scalar('prescore_process_resident_memory_bytes'))! > 0);
    });

    test('Prometheus loads alerts.yml and evaluates every rule without error; none fires for a fresh run', async () => {
      const rules = await waitFor('the rules to be evaluated', async () => {
        const r = await fetch(`${base}/api/v1/rules`);
        const body = (await r.json()) as {
          data: { groups: { rules: { name: string; health: string; lastError?: string; state: string }[] }[] };
        };
        const all = body.data.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((x) => x.health === 'ok') ? all : undefined;
      });
      for (const r of rules) assert.notEqual(r.state, 'firing', `${r.name} fires`);
      assert.ok(rules.some((r) => r.name === 'PrescoreJobNotPublished'));
    });
  },
);
