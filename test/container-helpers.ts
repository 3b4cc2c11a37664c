import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * podman on a machine with no registry: a Node 20 base made locally (debootstrap + this
 * machine's node and npm + its CA bundle), kept in podman's storage and reused while the
 * host's node and npm stay the same.
 */

// crun refuses the hybrid cgroup setup of these machines, and podman's default ulimits exceed
// what root may raise here: runc and explicit limits.
const CONTAINERS_CONF = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
`;

/** The environment for podman, buildah and podman-compose: CONTAINERS_CONF set unless the caller set it. */
export function containersEnv(): NodeJS.ProcessEnv {
  if (process.env.CONTAINERS_CONF) return process.env;
  const file = path.join(os.tmpdir(), 'prescore-containers.conf');
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== CONTAINERS_CONF) fs.writeFileSync(file, CONTAINERS_CONF);
  return { ...process.env, CONTAINERS_CONF: file };
}

/** Why podman cannot run containers here, or undefined when it can. */
export function podmanUnavailable(): string | undefined {
  const info = spawnSync('podman', ['info', '--format', '{{.Host.OCIRuntime.Name}}'], { encoding: 'utf8', env: containersEnv() });
  if (info.error) return `podman is not installed (${(info.error as NodeJS.ErrnoException).code}; .ci/run installs it)`;
  if (info.status !== 0) return `podman info fails: ${info.stderr.trim().split('\n').pop()}`;
  for (const tool of ['buildah', 'debootstrap']) {
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).error) return `${tool} is not installed (.ci/run installs it)`;
  }
  return undefined;
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to its end (never through a shell). */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: containersEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin.end(opts.input ?? '');
  });
}

async function must(cmd: string, args: string[], timeoutMs = 300_000): Promise<string> {
  const r = await run(cmd, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.slice(-2000)}`);
  return r.stdout.trim();
}

const imageExists = async (ref: string) => (await run('podman', ['image', 'exists', ref])).code === 0;

/** The Debian mirror apt already uses (debootstrap must not reach anywhere else). */
function debianMirror(): string {
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!fs.existsSync(file)) continue;
    const text = fs.readFileSync(file, 'utf8');
    const uri = /^URIs:\s*(\S+\/debian)\s*$/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\s/m.exec(text)?.[1];
    if (uri) return uri;
  }
  return 'http://deb.debian.org/debian';
}

const MINBASE = 'localhost/prescore-debian:bookworm-minbase';

/** Debian bookworm minbase, without apt's lists, caches, docs and locales. */
async function ensureMinbase(): Promise<void> {
  if (await imageExists(MINBASE)) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prescore-rootfs-'));
  try {
    await must('debootstrap', ['--variant=minbase', 'bookworm', dir, debianMirror()], 600_000);
    for (const sub of ['var/cache/apt', 'var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/locale']) {
      const p = path.join(dir, sub);
      for (const entry of fs.readdirSync(p)) fs.rmSync(path.join(p, entry), { recursive: true, force: true });
    }
    const tar = spawn('tar', ['-C', dir, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const imp = spawn('podman', ['import', '-', MINBASE], { env: containersEnv(), stdio: ['pipe', 'ignore', 'pipe'] });
    tar.stdout.pipe(imp.stdin);
    const code = await new Promise<number | null>((resolve) => imp.on('close', resolve));
    if (code !== 0) throw new Error(`podman import of the debootstrap rootfs failed (${code})`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A Node base with this machine's node and npm: its tag names both versions, so an upgrade makes a new one. */
export async function ensureNodeBase(): Promise<{ image: string; made: boolean; ms: number }> {
  const started = Date.now();
  const npmDir = path.dirname(path.dirname(fs.realpathSync(spawnSync('which', ['npm'], { encoding: 'utf8' }).stdout.trim())));
  const npmVersion = (JSON.parse(fs.readFileSync(path.join(npmDir, 'package.json'), 'utf8')) as { version: string }).version;
  const image = `localhost/prescore-node-base:${process.version}-npm${npmVersion}`;
  if (await imageExists(image)) return { image, made: false, ms: Date.now() - started };
  await ensureMinbase();
  const ctr = await must('buildah', ['from', MINBASE]);
  try {
    const root = await must('buildah', ['mount', ctr]);
    fs.copyFileSync(process.execPath, path.join(root, 'usr/local/bin/node'));
    fs.chmodSync(path.join(root, 'usr/local/bin/node'), 0o755);
    fs.cpSync(npmDir, path.join(root, 'usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
    fs.symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(root, 'usr/local/bin/npm'));
    fs.symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', path.join(root, 'usr/local/bin/npx'));
    fs.mkdirSync(path.join(root, 'etc/ssl/certs'), { recursive: true });
    fs.copyFileSync('/etc/ssl/certs/ca-certificates.crt', path.join(root, 'etc/ssl/certs/ca-certificates.crt'));
    await must('buildah', ['umount', ctr]);
    await must('buildah', ['commit', '-q', ctr, image]);
  } finally {
    await run('buildah', ['rm', ctr]);
  }
  return { image, made: true, ms: Date.now() - started };
}
