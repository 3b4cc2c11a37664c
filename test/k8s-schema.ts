import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../src/paths.js';

/**
 * Kubernetes manifests checked against the OpenAPI schemas, as kubernetes-models ships them:
 * its validators catch wrong types and missing required fields; misspelled fields and retired
 * apiVersions they let through, so those two checks are here, read from the same package's
 * type declarations (one interface per schema, one `"field"?: Type;` line per property).
 */

/** apiVersion → the kinds the manifests may use; anything else (e.g. autoscaling/v2beta2) is refused. */
export const ALLOWED_API_VERSIONS: Record<string, string[]> = {
  v1: ['ConfigMap', 'Service', 'ServiceAccount', 'Secret'],
  'apps/v1': ['Deployment'],
  'batch/v1': ['Job'],
  'policy/v1': ['PodDisruptionBudget'],
  'autoscaling/v2': ['HorizontalPodAutoscaler'],
};

const MODULES = path.join(packageRoot, 'node_modules');

interface Schema {
  /** field → the declared type, as written in the .d.ts */
  fields: Map<string, string>;
  /** type name → the .d.ts that declares it */
  imports: Map<string, string>;
}

const schemas = new Map<string, Schema | null>();

/** The interface declared in a kubernetes-models .d.ts, or null when the type is no object (a Quantity, an IntOrString). */
function schemaOf(file: string): Schema | null {
  const cached = schemas.get(file);
  if (cached !== undefined) return cached;
  const text = fs.readFileSync(file, 'utf8');
  const imports = new Map<string, string>();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) {
    const [, name, spec] = m as unknown as [string, string, string];
    // Specifiers name the module with or without its `.js`, depending on the package's version.
    const module = spec.replace(/\.js$/, '');
    const target = spec.startsWith('.') ? path.join(path.dirname(file), `${module}.d.ts`) : path.join(MODULES, `${module}.d.ts`);
    imports.set(name, target);
  }
  const body = /^export interface I\w+(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/m.exec(text);
  let schema: Schema | null = null;
  if (body) {
    const fields = new Map<string, string>();
    // A map type (`{ [key: string]: string }`) spans lines: only its first line, `{`, is kept.
    for (const m of body[1]!.matchAll(/^ {4}"([^"]+)"\??: (.+?);?$/gm)) fields.set(m[1]!, m[2]!);
    schema = { fields, imports };
  }
  schemas.set(file, schema);
  return schema;
}

function declarationFile(apiVersion: string, kind: string): string {
  return path.join(MODULES, 'kubernetes-models', ...apiVersion.split('/'), `${kind}.d.ts`);
}

/** Every field of `value` that its schema does not declare, as paths like `spec.template.spec.containers[0].imagePullPolcy`. */
export function unknownFields(manifest: { apiVersion: string; kind: string }): string[] {
  const found: string[] = [];
  const walk = (value: unknown, type: string, schema: Schema, at: string): void => {
    const array = /^Array<(.+)>$/.exec(type);
    if (array) {
      if (Array.isArray(value)) value.forEach((v, i) => walk(v, array[1]!, schema, `${at}[${i}]`));
      return;
    }
    const file = schema.imports.get(type);
    if (file === undefined || value === null || typeof value !== 'object') return; // a primitive, a map, a literal
    const inner = schemaOf(file);
    if (inner) check(value as Record<string, unknown>, inner, at);
  };
  const check = (obj: Record<string, unknown>, schema: Schema, at: string): void => {
    for (const [key, value] of Object.entries(obj)) {
      const type = schema.fields.get(key);
      const where = at === '' ? key : `${at}.${key}`;
      if (type === undefined) found.push(where);
      else walk(value, type, schema, where);
    }
  };
  const top = schemaOf(declarationFile(manifest.apiVersion, manifest.kind));
  if (!top) throw new Error(`no schema for ${manifest.apiVersion} ${manifest.kind}`);
  check(manifest as unknown as Record<string, unknown>, top, '');
  return found;
}

/** The problems of one manifest: apiVersion/kind not allowed, schema violations, unknown fields. */
export async function manifestProblems(manifest: unknown): Promise<string[]> {
  if (manifest === null || typeof manifest !== 'object') return ['not an object'];
  const { apiVersion, kind } = manifest as { apiVersion?: unknown; kind?: unknown };
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return ['apiVersion and kind must be strings'];
  if (!ALLOWED_API_VERSIONS[apiVersion]?.includes(kind)) return [`${apiVersion} ${kind} is not an allowed apiVersion/kind`];
  const mod = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<
    string,
    new (data: unknown) => { validate(): void }
  >;
  const problems: string[] = [];
  try {
    new mod[kind]!(manifest).validate();
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
  }
  for (const field of unknownFields(manifest as { apiVersion: string; kind: string })) problems.push(`unknown field ${field}`);
  return problems;
}
