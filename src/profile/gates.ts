import type { DriftReport } from './drift.js';

/**
 * Quality gates: thresholds on a run's drift against its baseline, checked before publish.
 * A breach of a `block` gate holds the run (the previous run keeps serving) until someone
 * approves or rejects it; a `warn` gate is reported and logged only.
 */
export const GATES = {
  featurePsi: { what: 'the largest PSI of any feature', max: 10 },
  featureJs: { what: 'the largest Jensen–Shannon distance of any feature', max: 1 },
  featureMeanShift: { what: "the largest change of a feature's mean, in baseline standard deviations", max: 1000 },
  nullRate: { what: "the largest increase of a feature's NULL/NaN/rejected share", max: 1 },
  scorePsi: { what: 'the PSI of the stored score', max: 10 },
  scoreJs: { what: 'the Jensen–Shannon distance of the stored score', max: 1 },
  outputPsi: { what: 'the largest PSI of any element of the stored outputs', max: 10 },
  labelShift: { what: "the largest change of any label's share", max: 1 },
  rowCountChange: { what: "the change of the run's row count against the previous published run, as a fraction", max: 100 },
} as const;

export type GateName = keyof typeof GATES;
export type GateAction = 'block' | 'warn';
export interface Gate {
  threshold: number;
  action: GateAction;
}
export type Gates = Partial<Record<GateName, Gate>>;

/** Without `gates` in the job: these, as warnings only (nothing is held until a job asks to). */
export const DEFAULT_GATES: Gates = {
  featurePsi: { threshold: 0.25, action: 'warn' },
  scorePsi: { threshold: 0.25, action: 'warn' },
  nullRate: { threshold: 0.05, action: 'warn' },
  rowCountChange: { threshold: 0.5, action: 'warn' },
};

export interface Breach {
  gate: GateName;
  action: GateAction;
  /** The feature or output, when the gate is about one. */
  column: string | null;
  value: number;
  threshold: number;
}

/** The breaches of `gates` by `report`, the worst column per gate. */
export function checkGates(report: DriftReport, gates: Gates): Breach[] {
  const features = report.columns.filter((c) => c.kind === 'feature');
  const score = report.columns.find((c) => c.column === 'score');
  const outputs = report.columns.filter((c) => c.column.startsWith('outputs['));
  const label = report.columns.find((c) => c.kind === 'label');
  const worst = <T extends { column: string }>(items: T[], value: (t: T) => number | null) => {
    let best: { column: string; value: number } | null = null;
    for (const it of items) {
      const v = value(it);
      if (v !== null && Number.isFinite(v) && (best === null || v > best.value)) best = { column: it.column, value: v };
    }
    return best;
  };
  const measures: Record<GateName, { column: string | null; value: number } | null> = {
    featurePsi: worst(features, (c) => c.psi),
    featureJs: worst(features, (c) => c.js),
    featureMeanShift: worst(features, (c) => (c.meanShift === null ? null : Math.abs(c.meanShift))),
    nullRate: worst(features, (c) => c.nullRateChange),
    scorePsi: score?.psi != null ? { column: 'score', value: score.psi } : null,
    scoreJs: score?.js != null ? { column: 'score', value: score.js } : null,
    outputPsi: worst(outputs, (c) => c.psi),
    labelShift: label?.classShift != null ? { column: 'label', value: label.classShift } : null,
    rowCountChange: report.rows.change === null ? null : { column: null, value: Math.abs(report.rows.change) },
  };
  const breaches: Breach[] = [];
  for (const [name, gate] of Object.entries(gates) as [GateName, Gate][]) {
    const m = measures[name];
    if (m && m.value > gate.threshold)
      breaches.push({ gate: name, action: gate.action, column: m.column, value: m.value, threshold: gate.threshold });
  }
  return breaches;
}

/** `featurePsi 0.41 > 0.25 on f3` */
export function describeBreach(b: Breach): string {
  return `${b.gate} ${round(b.value)} > ${b.threshold}${b.column ? ` on ${b.column}` : ''} (${b.action})`;
}

export function round(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
}
