import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { parseJobFile } from '../src/definitions/load.js';
import { DEFAULT_CHUNK_TIMEOUT_SECONDS } from '../src/definitions/schema.js';
import { readYamlDocuments, repoFile, undeclaredFlags } from './deploy-helpers.js';
import { manifestProblems } from './k8s-schema.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are checked field by field below */
type Manifest = any;

const BASE = repoFile('deploy', 'k8s');
const KUBECTL = ['/usr/bin/kubectl', 'kubectl'].find(
  (k) => spawnSync(k, ['version', '--client'], { stdio: 'ignore' }).status === 0,
);

const kustomization = parse(fs.readFileSync(`${BASE}/kustomization.yaml`, 'utf8')) as Manifest;
const files: string[] = kustomization.resources;
const rendered: Manifest[] = KUBECTL ? render() : [];

function render(): Manifest[] {
  const out = spawnSync(KUBECTL!, ['kustomize', BASE], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`kubectl kustomize ${BASE} failed: ${out.stderr}`);
  const file = `${fs.mkdtempSync('/tmp/prescore-k8s-')}/all.yaml`;
  fs.writeFileSync(file, out.stdout);
  return readYamlDocuments(file) as Manifest[];
}

const skipRender = KUBECTL ? false : 'kubectl is not installed (apt-get install kubectl): the kustomize output is not rendered';
const one = (kind: string, name: string) => {
  const found = rendered.find((m) => m.kind === kind && m.metadata.name === name);
  assert.ok(found, `${kind} ${name} in the kustomize output`);
  return found;
};
const podTemplates = () =>
  rendered
    .filter((m) => m.kind === 'Deployment' || m.kind === 'Job')
    .map((m) => ({ name: `${m.kind} ${m.metadata.name}`, template: m.spec.template }));

describe('the Kubernetes manifests', () => {
  test('every file of the base passes the OpenAPI schema, the unknown-field check and the apiVersion allow-list', async () => {
    const listed = fs.readdirSync(BASE).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    assert.deepEqual([...listed].sort(), [...files].sort(), 'every manifest file is a resource of the kustomization');
    for (const file of files) {
      for (const doc of readYamlDocuments(`${BASE}/${file}`)) assert.deepEqual(await manifestProblems(doc), [], file);
    }
  });

  test('the validator refuses a misspelled field, a retired apiVersion, a wrong type and a missing container list', async () => {
    const worker = readYamlDocuments(`${BASE}/worker.yaml`)[0] as Manifest;
    const typo = structuredClone(worker);
    typo.spec.template.spec.containers[0].imagePullPolcy = 'Always';
    assert.deepEqual(await manifestProblems(typo), ['unknown field spec.template.spec.containers[0].imagePullPolcy']);
    const old = { ...(readYamlDocuments(`${BASE}/api-hpa.yaml`)[0] as Manifest), apiVersion: 'autoscaling/v2beta2' };
    assert.match((await manifestProblems(old))[0]!, /autoscaling\/v2beta2 HorizontalPodAutoscaler is not an allowed/);
    const wrong = structuredClone(worker);
    wrong.spec.replicas = 'three';
    assert.match((await manifestProblems(wrong)).join('\n'), /replicas/);
    const empty = structuredClone(worker);
    delete empty.spec.template.spec.containers;
    assert.match((await manifestProblems(empty)).join('\n'), /containers/);
  });

  test('kubectl kustomize renders the base, and every rendered object passes the same checks', { skip: skipRender }, async () => {
    const kinds = rendered.map((m) => `${m.kind} ${m.metadata.name}`).sort();
    assert.deepEqual(
      kinds.map((k) => k.replace(/^ConfigMap prescore-jobs-\w+$/, 'ConfigMap prescore-jobs-<hash>')),
      [
        'ConfigMap prescore-jobs-<hash>',
        'Deployment prescore-api',
        'Deployment prescore-scheduler',
        'Deployment prescore-worker',
        'HorizontalPodAutoscaler prescore-api',
        'Job prescore-migrate',
        'PodDisruptionBudget prescore-api',
        'Service prescore-api',
        'ServiceAccount prescore',
      ],
    );
    for (const m of rendered) assert.deepEqual(await manifestProblems(m), [], `${m.kind} ${m.metadata.name}`);
  });

  test('every object carries the recommended labels; selectors pick one component', { skip: skipRender }, () => {
    for (const m of rendered) {
      const labels = m.metadata.labels ?? {};
      for (const key of ['name', 'instance', 'part-of', 'version', 'managed-by']) {
        assert.ok(labels[`app.kubernetes.io/${key}`], `${m.kind} ${m.metadata.name}: label app.kubernetes.io/${key}`);
      }
    }
    for (const { name, template } of podTemplates()) {
      assert.ok(template.metadata.labels['app.kubernetes.io/component'], `${name}: component label on its pods`);
    }
    for (const d of rendered.filter((m) => m.kind === 'Deployment')) {
      const selector = d.spec.selector.matchLabels;
      assert.equal(selector['app.kubernetes.io/component'], d.spec.template.metadata.labels['app.kubernetes.io/component']);
      // The version label changes on upgrade: it must not be in a selector (immutable).
      assert.equal(selector['app.kubernetes.io/version'], undefined, d.metadata.name);
    }
  });

  test(
    'every pod runs non-root with a read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp and /tmp on an emptyDir',
    { skip: skipRender },
    () => {
      for (const { name, template } of podTemplates()) {
        const pod = template.spec;
        assert.equal(pod.securityContext.runAsNonRoot, true, name);
        assert.equal(pod.securityContext.runAsUser, 10001, `${name}: the image's uid`);
        assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault', name);
        assert.equal(pod.automountServiceAccountToken, false, name);
        const tmp = pod.volumes.find((v: Manifest) => v.name === 'tmp');
        assert.ok(tmp?.emptyDir, `${name}: a tmp emptyDir`);
        for (const c of pod.containers) {
          assert.equal(c.securityContext.allowPrivilegeEscalation, false, name);
          assert.equal(c.securityContext.readOnlyRootFilesystem, true, name);
          assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], name);
          assert.ok(
            c.volumeMounts.some((v: Manifest) => v.name === 'tmp' && v.mountPath === '/tmp'),
            `${name}: /tmp mounted`,
          );
          for (const kind of ['requests', 'limits']) {
            assert.ok(c.resources[kind]?.cpu && c.resources[kind]?.memory, `${name}: cpu and memory ${kind}`);
          }
          assert.match(c.image, /^prescore:/, name);
        }
      }
    },
  );

  // worker and scheduler run with --metrics-port/--metrics-host: each flag must be declared.
  test('every flag a container passes is one its role declares (a typo would crash-loop the pod)', { skip: skipRender }, () => {
    for (const { name, template } of podTemplates()) {
      for (const c of template.spec.containers) assert.deepEqual(undeclaredFlags(c.args), [], `${name}: ${c.args.join(' ')}`);
    }
  });

  test(
    'connection strings come from the prescore-db Secret by reference; the base ships no Secret and no URL',
    { skip: skipRender },
    () => {
      assert.equal(rendered.filter((m) => m.kind === 'Secret').length, 0);
      assert.doesNotMatch(JSON.stringify(rendered), /(postgres(ql)?|redis):\/\//);
      for (const { name, template } of podTemplates()) {
        const env = template.spec.containers[0].env as Manifest[];
        const db = env.find((e) => e.name === 'DATABASE_URL');
        assert.deepEqual(db?.valueFrom?.secretKeyRef, { name: 'prescore-db', key: 'DATABASE_URL' }, name);
        const redis = env.find((e) => e.name === 'REDIS_URL');
        if (redis)
          assert.deepEqual(redis.valueFrom.secretKeyRef, { name: 'prescore-db', key: 'REDIS_URL', optional: true }, name);
      }
      for (const n of ['prescore-worker', 'prescore-scheduler']) {
        const env = one('Deployment', n).spec.template.spec.containers[0].env as Manifest[];
        assert.ok(
          env.some((e) => e.name === 'REDIS_URL'),
          `${n} gets REDIS_URL`,
        );
      }
    },
  );

  test(
    'workers: 3 replicas, a grace period longer than a chunk, threads sized to the CPU limit, a metrics port',
    { skip: skipRender },
    () => {
      const worker = one('Deployment', 'prescore-worker');
      assert.equal(worker.spec.replicas, 3);
      const pod = worker.spec.template.spec;
      assert.ok(
        pod.terminationGracePeriodSeconds > DEFAULT_CHUNK_TIMEOUT_SECONDS,
        `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > chunkTimeoutSeconds ${DEFAULT_CHUNK_TIMEOUT_SECONDS}`,
      );
      const c = pod.containers[0];
      assert.deepEqual(c.args, ['worker', '--metrics-port', '9464', '--metrics-host', '0.0.0.0']);
      const env = Object.fromEntries((c.env as Manifest[]).filter((e) => 'value' in e).map((e) => [e.name, e.value]));
      assert.ok(
        Number(env.PRESCORE_INFERENCE_THREADS) <= Number(c.resources.limits.cpu),
        'inference threads within the CPU limit',
      );
      const heapMiB = Number(/--max-old-space-size=(\d+)/.exec(env.NODE_OPTIONS)?.[1]);
      const limitMiB =
        Number(/^(\d+)Gi$/.exec(c.resources.limits.memory)?.[1]) * 1024 ||
        Number(/^(\d+)Mi$/.exec(c.resources.limits.memory)?.[1]);
      assert.ok(
        heapMiB > 0 && heapMiB <= limitMiB * 0.75,
        `old space ${heapMiB} MiB leaves room under the ${limitMiB} MiB limit`,
      );
    },
  );

  test('the scheduler runs 2 replicas and the migration is a Job', { skip: skipRender }, () => {
    assert.equal(one('Deployment', 'prescore-scheduler').spec.replicas, 2);
    const job = one('Job', 'prescore-migrate');
    assert.deepEqual(job.spec.template.spec.containers[0].args, ['migrate']);
    assert.ok(['Never', 'OnFailure'].includes(job.spec.template.spec.restartPolicy));
  });

  test('pods that serve metrics name the port `metrics` and carry matching Prometheus annotations', { skip: skipRender }, () => {
    for (const n of ['prescore-worker', 'prescore-scheduler', 'prescore-api']) {
      const template = one('Deployment', n).spec.template;
      const port = (template.spec.containers[0].ports as Manifest[]).find((p) => p.name === 'metrics');
      assert.ok(port, `${n}: a port named metrics`);
      assert.equal(template.metadata.annotations['prometheus.io/scrape'], 'true', n);
      assert.equal(template.metadata.annotations['prometheus.io/port'], String(port.containerPort), n);
    }
  });

  test(
    'the API: /readyz and /healthz probes on a declared port, a Service, a PodDisruptionBudget and a CPU autoscaler',
    { skip: skipRender },
    () => {
      const api = one('Deployment', 'prescore-api');
      const c = api.spec.template.spec.containers[0];
      assert.deepEqual(c.args, ['serve', '--host', '0.0.0.0', '--port', '8080', '--ops-port', '9465', '--ops-host', '0.0.0.0']);
      const portNames = (c.ports as Manifest[]).map((p) => p.name);
      assert.equal(c.readinessProbe.httpGet.path, '/readyz');
      assert.equal(c.livenessProbe.httpGet.path, '/healthz');
      assert.ok(portNames.includes(c.readinessProbe.httpGet.port) && portNames.includes(c.livenessProbe.httpGet.port));
      assert.equal(api.spec.replicas, undefined, 'the autoscaler owns the replica count');
      const env = Object.fromEntries((c.env as Manifest[]).map((e) => [e.name, e.value]));
      assert.equal(env.PRESCORE_API_AUTH, 'token');

      const podLabels = api.spec.template.metadata.labels;
      const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
      const svc = one('Service', 'prescore-api');
      assert.ok(selects(svc.spec.selector), 'the Service selects the API pods');
      assert.deepEqual(
        (svc.spec.ports as Manifest[]).map((p) => p.targetPort),
        ['http'],
        'the Service exposes the API port only, never the token-free ops port',
      );
      const pdb = one('PodDisruptionBudget', 'prescore-api');
      assert.ok(selects(pdb.spec.selector.matchLabels));
      assert.ok(pdb.spec.minAvailable >= 1);
      const hpa = one('HorizontalPodAutoscaler', 'prescore-api');
      assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'prescore-api' });
      assert.ok(hpa.spec.minReplicas > pdb.spec.minAvailable, 'a drain can always evict one API pod');
      assert.equal(hpa.spec.metrics[0].resource.name, 'cpu');
    },
  );

  test(
    'job files come from the generated ConfigMap, mounted read-only at /app/jobs, and each is a valid job',
    { skip: skipRender },
    () => {
      const cm = rendered.find((m) => m.kind === 'ConfigMap' && m.metadata.name.startsWith('prescore-jobs-'));
      assert.ok(cm);
      for (const [file, text] of Object.entries(cm.data as Record<string, string>)) {
        const job = parseJobFile(file, text);
        assert.equal(`${job.spec.name}.json`, file);
      }
      for (const n of ['prescore-worker', 'prescore-scheduler']) {
        const pod = one('Deployment', n).spec.template.spec;
        const volume = (pod.volumes as Manifest[]).find((v) => v.configMap);
        assert.equal(volume.configMap.name, cm.metadata.name, `${n} mounts the generated (hashed) name`);
        const mount = (pod.containers[0].volumeMounts as Manifest[]).find((m) => m.name === volume.name);
        assert.deepEqual([mount.mountPath, mount.readOnly], ['/app/jobs', true], n);
      }
    },
  );
});
