import fs from 'node:fs';
import type { Command } from 'commander';
import { InputError } from '../errors.js';
import type { ModelVersion } from '../models/registry.js';
import { printJson, printTable, withContext } from './context.js';

function positiveInt(value: string, flag: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InputError(`${flag} must be a positive integer (got "${value}")`);
  return Number(value);
}

export function modelsCommands(program: Command): void {
  const models = program.command('models').description('register, list and promote ONNX models');
  models
    .command('register <name> <file>')
    .description('store an ONNX model (bytes, sha256, signature) as a new version')
    .option('--version <v>', 'version number (default: next)')
    .option('--alias <alias>', 'point this alias (e.g. champion) at the new version')
    .action(async (name: string, file: string, opts: { version?: string; alias?: string }) => {
      if (!fs.existsSync(file)) throw new InputError(`model file ${file} does not exist`);
      const bytes = fs.readFileSync(file);
      const version = opts.version === undefined ? undefined : positiveInt(opts.version, '--version');
      const { registerModel } = await import('../models/registry.js');
      await withContext(async ({ db }) => {
        const r = await registerModel(db.pool, { name, bytes, file, version, alias: opts.alias });
        const io = `inputs ${r.signature.inputs.map((i) => `${i.name}:${i.type}[${i.shape.map((d) => d ?? '?').join(',')}]`).join(' ')}; outputs ${r.signature.outputs.map((o) => `${o.name}:${o.type}`).join(' ')}`;
        process.stdout.write(
          `${r.created ? 'registered' : 'already registered'} ${name} v${r.version} (sha256 ${r.sha256.slice(0, 12)}; ${io})` +
            (opts.alias ? `, alias ${opts.alias}` : '') +
            (r.rewrite ? `; rewritten from sha256 ${r.rewrite.from.slice(0, 12)}: ${r.rewrite.note}` : '') +
            '\n',
        );
      });
    });
  models
    .command('list [name]')
    .description('model versions with their aliases')
    .option('--json', 'machine-readable output')
    .action(async (name: string | undefined, opts: { json?: boolean }) => {
      const { listModels } = await import('../models/registry.js');
      await withContext(async ({ db }) => {
        const list = await listModels(db.pool, name);
        if (opts.json) return printJson(list);
        printTable(
          ['NAME', 'VERSION', 'ALIASES', 'SHA256', 'INPUTS', 'OUTPUTS', 'REWRITTEN', 'CREATED'],
          list.map((m) => [
            m.name,
            m.version,
            m.aliases.join(',') || null,
            m.sha256.slice(0, 12),
            m.signature.inputs.map((i) => `${i.name}[${i.shape.map((d) => d ?? '?').join(',')}]`).join(' '),
            m.signature.outputs.map((o) => o.name).join(' '),
            m.rewrite ? `from ${m.rewrite.from.slice(0, 12)}` : null,
            m.createdAt.slice(0, 19),
          ]),
        );
      });
    });
  models
    .command('show <ref>')
    .description('one model version (name@version or name@alias): signature, aliases, rewrite')
    .option('--json', 'machine-readable output')
    .action(async (ref: string, opts: { json?: boolean }) => {
      const { listModels, resolveModel } = await import('../models/registry.js');
      await withContext(async ({ db }) => {
        const pinned = await resolveModel(db.pool, ref);
        const m = (await listModels(db.pool, pinned.name)).find((v) => v.version === pinned.version)!;
        if (opts.json) return printJson(m);
        process.stdout.write(describeModel(m));
      });
    });
  models
    .command('promote <name> <version>')
    .description('point an alias at a version')
    .requiredOption('--alias <alias>', 'the alias to move, e.g. champion')
    .action(async (name: string, version: string, opts: { alias: string }) => {
      const v = positiveInt(version, 'version');
      const { promoteModel } = await import('../models/registry.js');
      await withContext(async ({ db }) => {
        await promoteModel(db.pool, name, v, opts.alias);
        process.stdout.write(`${name}@${opts.alias} -> v${v}\n`);
      });
    });
}

function describeModel(m: ModelVersion): string {
  const t = (s: { name: string; type: string; shape: (number | null)[] }) =>
    `${s.name}: ${s.type}[${s.shape.map((d) => d ?? '?').join(',')}]`;
  return [
    `${m.name} v${m.version}${m.aliases.length ? ` (${m.aliases.join(', ')})` : ''}`,
    `  sha256   ${m.sha256}`,
    ...(m.rewrite ? [`  rewritten from sha256 ${m.rewrite.from}: ${m.rewrite.note}`] : []),
    ...m.signature.inputs.map((i) => `  input    ${t(i)}`),
    ...m.signature.outputs.map((o) => `  output   ${t(o)}`),
    `  created  ${m.createdAt}`,
    '',
  ].join('\n');
}
