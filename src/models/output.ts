import { NUMERIC_OUTPUT_TYPES, type ModelSignature, type TensorSignature } from './signature.js';

/** Which model output (and index along its last axis) feeds a stored column. */
export interface OutputRef {
  output: string;
  index: number | null;
}

export interface OutputMapping {
  score?: OutputRef;
  label?: OutputRef;
  outputs?: OutputRef;
}

export type OutputField = keyof OutputMapping;

export function parseOutputRef(text: string): OutputRef | null {
  const m = /^([^[\]]+?)(?:\[(\d+)\])?$/.exec(text.trim());
  if (!m) return null;
  return { output: m[1]!, index: m[2] === undefined ? null : Number(m[2]) };
}

export function formatOutputRef(ref: OutputRef): string {
  return ref.index === null ? ref.output : `${ref.output}[${ref.index}]`;
}

/** Values per row along the last axis: 1 for [N] and [N,1]; null when not known until run time. */
export function widthOf(sig: TensorSignature): number | null {
  if (sig.shape.length === 0) return null;
  if (sig.shape.length === 1) return 1;
  if (sig.shape.length === 2) return sig.shape[1] ?? null;
  return null;
}

/**
 * Resolves the job's `output` section against the model's outputs. Returns the mapping and
 * the problems found (each names the field and the fix), all of them.
 */
export function resolveOutputMapping(
  spec: Partial<Record<OutputField, string>> | undefined,
  signature: ModelSignature,
): { mapping: OutputMapping; problems: string[] } {
  const problems: string[] = [];
  const names = signature.outputs.map((o) => o.name);
  const mapping: OutputMapping = {};
  if (spec === undefined || Object.keys(spec).length === 0) {
    const only = signature.outputs.length === 1 ? signature.outputs[0]! : undefined;
    if (only && (widthOf(only) === 1 || widthOf(only) === null) && NUMERIC_OUTPUT_TYPES.includes(only.type)) {
      return { mapping: { score: { output: only.name, index: null } }, problems };
    }
    problems.push(
      `output: the model has outputs ${names.join(', ')}: map them, e.g. "output": {"score": "${names.at(-1)}[1]", "label": "${names[0]}"}`,
    );
    return { mapping, problems };
  }
  for (const field of ['score', 'label', 'outputs'] as const) {
    const text = spec[field];
    if (text === undefined) continue;
    const ref = parseOutputRef(text);
    const sig = ref ? signature.outputs.find((o) => o.name === ref.output) : undefined;
    if (!ref || !sig) {
      problems.push(`output.${field}: "${text}" names no model output; the model has ${names.join(', ')}`);
      continue;
    }
    const width = widthOf(sig);
    if (sig.shape.length > 2) {
      problems.push(
        `output.${field}: output ${sig.name} has shape [${sig.shape.join(',')}]; prescore stores rank 1 or 2 outputs`,
      );
      continue;
    }
    if (ref.index !== null && width !== null && ref.index >= width) {
      problems.push(`output.${field}: index ${ref.index} is past the end of ${sig.name}, which has ${width} values per row`);
      continue;
    }
    const numeric = NUMERIC_OUTPUT_TYPES.includes(sig.type);
    if (field === 'score' && !numeric)
      problems.push(`output.score: ${sig.name} is ${sig.type}; the score must be numeric (map it to label)`);
    else if (field === 'score' && ref.index === null && width !== null && width !== 1) {
      problems.push(`output.score: ${sig.name} has ${width} values per row; pick one, e.g. "${sig.name}[1]"`);
    } else if (field === 'outputs' && !numeric)
      problems.push(`output.outputs: ${sig.name} is ${sig.type}; outputs must be numeric`);
    else if (field === 'outputs' && ref.index !== null)
      problems.push(`output.outputs: takes a whole output ("${sig.name}"), not one index`);
    else if (field === 'label' && ref.index === null && width !== null && width !== 1) {
      problems.push(`output.label: ${sig.name} has ${width} values per row; the label is one value per row`);
    }
    mapping[field] = ref;
  }
  return { mapping, problems };
}

/** The model outputs a mapping reads. */
export function mappedOutputs(mapping: OutputMapping): string[] {
  return [...new Set(Object.values(mapping).map((r) => r.output))];
}
