import { s } from './dom.js';
import { num, pct } from './format.js';

/** The bins of a column's drift (`runs report --json`): lower edges and each side's counts. */
export interface Bins {
  edges: number[];
  baseline: number[];
  run: number[];
}

const W = 560;
const H = 190;
const PAD = { left: 44, right: 8, top: 10, bottom: 40 };

function shares(counts: number[]): number[] {
  const total = counts.reduce((a, c) => a + c, 0) || 1;
  return counts.map((c) => c / total);
}

/** What bin `i` holds: below the first edge, between two edges, or from the last edge up. */
export function binLabel(edges: number[], i: number): string {
  if (i === 0) return `< ${num(edges[0])}`;
  if (i >= edges.length) return `≥ ${num(edges[edges.length - 1])}`;
  return `${num(edges[i - 1])} to ${num(edges[i])}`;
}

/**
 * Baseline against run, bin by bin, as shares of each side's rows: the baseline's quantile
 * bins (plus under- and overflow), so a stable column shows even grey bars and a shifted one
 * piles its run bars at one end. Hand-written SVG: one group per bin, a tooltip per group.
 */
export function histogram(column: string, bins: Bins, flagged: boolean): SVGSVGElement {
  const base = shares(bins.baseline);
  const run = shares(bins.run);
  const n = base.length;
  const top = Math.max(...base, ...run, 1e-9);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / n;
  const bar = Math.max(1, (slot - 2) / 2);
  const y = (share: number) => PAD.top + plotH - (share / top) * plotH;
  const svg = s('svg', {
    class: 'histogram',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': `${column}: baseline and run histograms`,
    'data-column': column,
  });
  // Horizontal grid and the share axis.
  for (const f of [0, 0.5, 1]) {
    const gy = y(top * f);
    svg.append(
      s('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: gy, y2: gy }),
      s('text', { class: 'axis', x: PAD.left - 6, y: gy + 3, 'text-anchor': 'end' }, pct(top * f, 0)),
    );
  }
  const labelEvery = Math.ceil(n / 8);
  for (let i = 0; i < n; i++) {
    const x0 = PAD.left + i * slot + 1;
    const g = s(
      'g',
      { class: 'bin', 'data-bin': i },
      s('title', {}, `${binLabel(bins.edges, i)}: baseline ${pct(base[i])} · run ${pct(run[i])}`),
      // An invisible full-height target, so thin bars still show their tooltip.
      s('rect', { class: 'hit', x: x0 - 1, y: PAD.top, width: slot, height: plotH }),
      s('rect', { class: 'bar baseline', x: x0, y: y(base[i]!), width: bar, height: PAD.top + plotH - y(base[i]!) }),
      s('rect', {
        class: flagged ? 'bar run flagged' : 'bar run',
        x: x0 + bar,
        y: y(run[i]!),
        width: bar,
        height: PAD.top + plotH - y(run[i]!),
      }),
    );
    svg.append(g);
    // Edge values under the bin boundaries (the first bin is everything below the first edge).
    if (i > 0 && (i - 1) % labelEvery === 0 && i - 1 < bins.edges.length) {
      const ex = PAD.left + i * slot;
      svg.append(
        s('line', { class: 'tick', x1: ex, x2: ex, y1: PAD.top + plotH, y2: PAD.top + plotH + 4 }),
        s('text', { class: 'axis', x: ex, y: PAD.top + plotH + 15, 'text-anchor': 'middle' }, num(bins.edges[i - 1])),
      );
    }
  }
  svg.append(
    s('line', { class: 'baseline-axis', x1: PAD.left, x2: W - PAD.right, y1: PAD.top + plotH, y2: PAD.top + plotH }),
    s('text', { class: 'axis', x: PAD.left, y: H - 6 }, 'below'),
    s('text', { class: 'axis', x: W - PAD.right, y: H - 6, 'text-anchor': 'end' }, 'above'),
    s('text', { class: 'axis caption', x: PAD.left + plotW / 2, y: H - 6, 'text-anchor': 'middle' }, 'baseline quantile bins'),
  );
  return svg;
}
