import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../src/cli/program.js';
import { resolveConfig } from '../src/config.js';
import { queueBackend } from '../src/queue/connection.js';
import { cli, createTestDb, type TestDb } from './helpers.js';

/** Every command of the program, with its path (`runs list`), walked from the program itself. */
function allCommands(c: Command, at: string[] = []): { path: string[]; command: Command }[] {
  return c.commands.flatMap((sub) => [{ path: [...at, sub.name()], command: sub }, ...allCommands(sub, [...at, sub.name()])]);
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
