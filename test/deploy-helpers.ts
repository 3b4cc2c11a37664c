import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { parse } from 'yaml';
import { schedulerCommand } from '../src/cli/scheduler.js';
import { serveCommand } from '../src/cli/serve.js';
import { workerCommands } from '../src/cli/worker.js';
import { packageRoot } from '../src/paths.js';

/** The long-running roles a deployment starts, as the CLI declares them (nothing is run). */
function roles(): Command {
  const program = new Command('prescore');
  serveCommand(program);
  workerCommands(program);
  schedulerCommand(program);
  return program;
}

/**
 * The flags of a container's command line (`serve --host 0.0.0.0 ...`) that its role does not
 * declare: a typo here would make the container exit at start. [] when all are known.
 */
export function undeclaredFlags(args: string[]): string[] {
  const [role, ...rest] = args;
  if (role === 'migrate') return rest.filter((a) => a.startsWith('--'));
  const command = roles().commands.find((c) => c.name() === role);
  if (!command) return [`unknown role ${String(role)}`];
  const declared = new Set(command.options.map((o) => o.long));
  return rest.filter((a) => a.startsWith('--') && !declared.has(a.split('=')[0]));
}

/** Each YAML document of a file (a kustomize render holds many). */
export function readYamlDocuments(file: string): unknown[] {
  const text = fs.readFileSync(file, 'utf8');
  return text
    .split(/^---$/m)
    .filter((doc) => doc.trim() !== '')
    .map((doc) => parse(doc) as unknown);
}

export const repoFile = (...parts: string[]) => path.join(packageRoot, ...parts);
