import fs from 'node:fs';
import type { Command } from 'commander';
import { InputError } from '../errors.js';
import { listModels, promoteModel, registerModel } from '../models/registry.js';
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
      await withContext(async ({ db }) => {
        const r = await registerModel(db.pool, { name, bytes, file, version, alias: opts.alias });
        const io = `inputs ${r.signature.inputs.map((i) => `${i.name}:${i.type}[${i.shape.map((d) => d ?? '?').join(',')}]`).join(' ')}; outputs ${r.signature.outputs.map((o) => `${o.name}:${o.type}`).join(' ')}`;
        process.stdout.write(
          `${r.created ? 'registered' : 'already registered'} ${name} v${r.version} (sha256 ${r.sha256.slice(0, 12)}; ${io})` +
            (opts.alias ? `, alias ${opts.alias}` : '') +
            '\n',
        );
      });
    });
  models
    .command('list [name]')
    .description('model versions with their aliases')
    .option('--json', 'machine-readable output')
    .action(async (name: string | undefined, opts: { json?: boolean }) => {
      await withContext(async ({ db }) => {
        const list = await listModels(db.pool, name);
        if (opts.json) return printJson(list);
        printTable(
          ['NAME', 'VERSION', 'ALIASES', 'SHA256', 'INPUTS', 'OUTPUTS', 'CREATED'],
          list.map((m) => [
            m.name,
            m.version,
            m.aliases.join(',') || null,
            m.sha256.slice(0, 12),
            m.signature.inputs.map((i) => `${i.name}[${i.shape.map((d) => d ?? '?').join(',')}]`).join(' '),
            m.signature.outputs.map((o) => o.name).join(' '),
            m.createdAt.slice(0, 19),
          ]),
        );
      });
    });
  models
    .command('promote <name> <version>')
    .description('point an alias at a version')
    .requiredOption('--alias <alias>', 'the alias to move, e.g. champion')
    .action(async (name: string, version: string, opts: { alias: string }) => {
      const v = positiveInt(version, 'version');
      await withContext(async ({ db }) => {
        await promoteModel(db.pool, name, v, opts.alias);
        process.stdout.write(`${name}@${opts.alias} -> v${v}\n`);
      });
    });
}
