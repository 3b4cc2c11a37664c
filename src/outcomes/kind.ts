import type { OutputMapping } from '../models/output.js';
import { widthOf } from '../models/output.js';
import type { ModelSignature } from '../models/signature.js';

export type ModelKind = 'classifier' | 'regressor';

/**
 * Whether a job's predictions are evaluated as a binary classifier's or a regressor's, unless
 * `outcomes.kind` says: a classifier when the job stores a label (`output.label`), or when its
 * score is one value of a model output with two or more values per row (`"probabilities[1]"`:
 * a class probability); otherwise (one scalar output) a regressor. A model whose score is one
 * value of a wider output that is not a probability says `"kind": "regressor"`.
 */
export function modelKind(
  resolved: { mapping?: OutputMapping; model?: { signature?: ModelSignature } } | null | undefined,
  declared?: ModelKind,
): ModelKind {
  if (declared) return declared;
  const mapping = resolved?.mapping;
  if (!mapping) return 'regressor';
  if (mapping.label) return 'classifier';
  const score = mapping.score;
  if (score && score.index !== null) {
    const out = resolved.model?.signature?.outputs.find((o) => o.name === score.output);
    const width = out ? widthOf(out) : null;
    if (width === null || width >= 2) return 'classifier';
  }
  return 'regressor';
}
