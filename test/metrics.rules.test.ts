import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { parse } from 'yaml';
import { repoFile } from './deploy-helpers.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- the deploy files are checked field by field below */

const PROMTOOL = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
const skipPromtool = PROMTOOL ? false : 'promtool is not installed (apt-get install prometheus)';

function promtool(...args: string[]): void {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: repoFile() });
  assert.equal(r.status, 0, `promtool ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
}

/** Every metric prescore defines: the names in src/ and the process metrics under our prefix. */
function definedMetrics(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts'))
        for (const m of fs
          .readFileSync(p, 'utf8')
          .matchAll(/new (?:Counter|Gauge|Histogram|Summary)\(\{\s*name: '(prescore_[a-z0-9_]+)'/g))
          names.add(m[1]!);
    }
  };
  walk(repoFile('src'));
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'prescore_' });
  for (const m of registry.getMetricsAsArray()) names.add(m.name);
  return names;
}

/** The prescore metric names a PromQL expression refers to (histogram series by their family). */
function referenced(expr: string): string[] {
  // Not label names: drop strings, label matchers and the label lists of by/without/on/ignoring.
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  return [...bare.matchAll(/\bprescore_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

const defined = definedMetrics();
const dashboard = JSON.parse(fs.readFileSync(repoFile('deploy/grafana/dashboards/prescore.json'), 'utf8')) as any;
const panels = (dashboard.panels as any[]).filter((p) => p.type !== 'row');
const alerts = parse(fs.readFileSync(repoFile('deploy/prometheus/alerts.yml'), 'utf8')) as any;
const rules = (alerts.groups as any[]).flatMap((g) => g.rules as any[]);

describe('Prometheus rules and the Grafana dashboard', () => {
  test('the metrics prescore defines are found (the check below is not vacuous)', () => {
    for (const name of [
      'prescore_chunks_total',
      'prescore_runs',
      'prescore_http_requests_total',
      'prescore_process_cpu_seconds_total',
    ])
      assert.ok(defined.has(name), name);
  });

  test('promtool: alerts.yml is valid and its unit tests pass', { skip: skipPromtool }, () => {
    promtool('check', 'rules', 'deploy/prometheus/alerts.yml');
    promtool('test', 'rules', 'deploy/prometheus/alerts.test.yml');
  });

  test('promtool: prometheus.yml is valid, with its rule file resolved beside it', { skip: skipPromtool }, () => {
    const config = parse(fs.readFileSync(repoFile('deploy/prometheus/prometheus.yml'), 'utf8')) as any;
    assert.deepEqual(config.rule_files, ['alerts.yml']);
    // As mounted in the container: /etc/prometheus/{prometheus,alerts}.yml.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-prom-'));
    try {
      fs.copyFileSync(repoFile('deploy/prometheus/prometheus.yml'), path.join(dir, 'prometheus.yml'));
      fs.copyFileSync(repoFile('deploy/prometheus/alerts.yml'), path.join(dir, 'alerts.yml'));
      promtool('check', 'config', path.join(dir, 'prometheus.yml'));
      fs.rmSync(path.join(dir, 'alerts.yml'));
      const missing = spawnSync('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')], { encoding: 'utf8' });
      assert.notEqual(missing.status, 0, 'without alerts.yml beside it the config is refused');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Prometheus scrapes the compose services on their metrics ports', () => {
    const config = parse(fs.readFileSync(repoFile('deploy/prometheus/prometheus.yml'), 'utf8')) as any;
    const targets = (config.scrape_configs as any[]).flatMap((s) => [
      ...(s.static_configs ?? []).flatMap((c: any) => c.targets as string[]),
      ...(s.dns_sd_configs ?? []).flatMap((c: any) => (c.names as string[]).map((n) => `${n}:${c.port}`)),
    ]);
    for (const t of ['api:9465', 'worker:9464', 'scheduler:9464']) assert.ok(targets.includes(t), t);
    const compose = parse(fs.readFileSync(repoFile('docker-compose.yml'), 'utf8'), { merge: true }) as any;
    assert.deepEqual(compose.services.api.command.slice(-4), ['--ops-port', '9465', '--ops-host', '0.0.0.0']);
    for (const s of ['worker', 'scheduler'])
      assert.deepEqual(compose.services[s].command.slice(1, 3), ['--metrics-port', '9464']);
  });

  test('every alert refers only to metrics prescore defines', () => {
    assert.ok(rules.length >= 6);
    for (const r of rules) {
      for (const name of referenced(r.expr)) assert.ok(defined.has(name), `alert ${r.alert}: ${name} is not a prescore metric`);
    }
    const names = rules.map((r) => r.alert);
    for (const a of ['PrescoreJobNotPublished', 'PrescoreRunFailed', 'PrescoreRunHeld', 'PrescoreApiErrors', 'PrescoreApiSlow'])
      assert.ok(names.includes(a), a);
  });

  test('the dashboard parses, every panel queries only metrics prescore defines, and its datasource is the provisioned one', () => {
    assert.ok(panels.length >= 12);
    const datasource = parse(fs.readFileSync(repoFile('deploy/grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as any;
    const uid = datasource.datasources[0].uid;
    assert.equal(datasource.datasources[0].url, 'http://prometheus:9090');
    const used = new Set<string>();
    for (const p of panels) {
      assert.equal(p.datasource.uid, uid, p.title);
      assert.ok(p.targets.length > 0, `${p.title}: a query`);
      for (const t of p.targets) {
        const names = referenced(t.expr);
        assert.ok(names.length > 0, `${p.title}: ${t.expr} names a prescore metric`);
        for (const n of names) {
          assert.ok(defined.has(n), `panel ${p.title}: ${n} is not a prescore metric`);
          used.add(n);
        }
      }
    }
    for (const n of [
      'prescore_runs',
      'prescore_rows_scored_total',
      'prescore_rows_rejected_total',
      'prescore_inference_duration_seconds',
      'prescore_queue_jobs',
      'prescore_last_publish_age_seconds',
      'prescore_last_run_feature_psi_max',
      'prescore_last_run_score_psi',
      'prescore_http_requests_total',
      'prescore_http_request_duration_seconds',
    ])
      assert.ok(used.has(n), `a panel shows ${n}`);
    const provider = parse(fs.readFileSync(repoFile('deploy/grafana/provisioning/dashboards/prescore.yml'), 'utf8')) as any;
    assert.equal(provider.providers[0].type, 'file');
    assert.equal(provider.providers[0].options.path, '/var/lib/grafana/dashboards');
  });

  test('no metric is labelled `job` (Prometheus sets that label itself); each is in the README', () => {
    const src: string[] = [];
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts')) src.push(fs.readFileSync(p, 'utf8'));
      }
    };
    walk(repoFile('src'));
    for (const text of src) assert.doesNotMatch(text, /labelNames: \[[^\]]*'job'/);
    const readme = fs.readFileSync(repoFile('README.md'), 'utf8');
    for (const n of defined) {
      if (/^prescore_(process|nodejs)_/.test(n)) continue;
      assert.ok(readme.includes(`\`${n}`), `README names ${n}`);
    }
  });
});
