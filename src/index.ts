/**
 * The package's programmatic entry point (`import { openBundle } from 'prescore'`): reading
 * and scoring an exported bundle with no database. The CLI is `prescore`.
 */
export { openBundle } from './bundle/read.js';
export type { Bundle, BundlePrediction, OpenBundleOptions, ScoredPrediction } from './bundle/read.js';
export { BundleError, verifyBundle } from './bundle/manifest.js';
export type { Manifest } from './bundle/manifest.js';
/** The A/B bucket of a key (job's `serving.split`), as the read API computes it. */
export { bucketOf } from './serving/split.js';
