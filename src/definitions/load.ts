import fs from 'node:fs';
import path from 'node:path';
import { InputError, ValidationError } from '../errors.js';
import { checkName } from '../names.js';
import { describeIssues, jobSchema, type JobSpec } from './schema.js';

export interface JobFile {
  file: string;
  spec: JobSpec;
}

/** Reads and validates one job file; every problem is reported at once. */
export function parseJobFile(file: string, text: string): JobFile {
  const rel = path.relative(process.cwd(), file) || file;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InputError(`${rel}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  const parsed = jobSchema.safeParse(raw);
  const problems = parsed.success ? [] : describeIssues(parsed.error);
  const expected = path.basename(file, '.json');
  if (parsed.success && parsed.data.name !== expected) {
    problems.push(`name: is "${parsed.data.name}" but the file is ${expected}.json: make them the same`);
  }
  if (problems.length > 0 || !parsed.success) throw new ValidationError(rel, problems);
  return { file: rel, spec: parsed.data };
}

export function listJobFiles(jobsDir: string): string[] {
  if (!fs.existsSync(jobsDir)) return [];
  return fs
    .readdirSync(jobsDir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => path.join(jobsDir, f));
}

export function loadJob(jobsDir: string, name: string): JobFile {
  checkName(name, 'job name');
  const file = path.join(jobsDir, `${name}.json`);
  if (!fs.existsSync(file)) {
    const known = listJobFiles(jobsDir).map((f) => path.basename(f, '.json'));
    throw new InputError(
      `no job "${name}": ${file} does not exist` +
        (known.length ? ` (jobs here: ${known.join(', ')})` : ` (set PRESCORE_JOBS_DIR?)`),
    );
  }
  return parseJobFile(file, fs.readFileSync(file, 'utf8'));
}
