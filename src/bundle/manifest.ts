import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../errors.js';
import type { Feed } from '../models/inputs.js';
import type { OutputMapping } from '../models/output.js';
import type { InputType } from '../models/signature.js';

/**
 * An edge bundle: one published run of a job, with no database. `manifest.json` names it and
 * holds the sha256 of every other file, and its own (`manifestSha256`, over the manifest
 * without that field), so a changed byte anywhere is found before anything is served.
 */
export const BUNDLE_FORMAT = 'prescore-bundle';
export const BUNDLE_VERSION = 1;
export const MANIFEST = 'manifest.json';
export const PREDICTIONS_FILE = 'predictions.arrow';
export const REJECTS_FILE = 'rejects.arrow';
export const MODEL_FILE = 'model.onnx';
const FILES = [PREDICTIONS_FILE, REJECTS_FILE, MODEL_FILE] as const;

export interface BundleFile {
  sha256: string;
  bytes: number;
}

export interface Manifest {
  format: typeof BUNDLE_FORMAT;
  formatVersion: number;
  job: string;
  date: string;
  runId: string;
  /** When the run was published (ISO 8601). */
  publishedAt: string;
  model: { name: string; version: number; sha256: string };
  /** The model's input as the run fed it. */
  input: { name: string; type: InputType; batch: number | null };
  /** The job's features, in the model's input order (without `feeds`). */
  features: string[];
  /**
   * Set when the job feeds its model through an `inputs` mapping, text or int/bool/float16 inputs
   * (models/inputs.ts): the bundle's lookups answer as always, but scoring sent features (which
   * feeds one plain tensor) is refused, saying so.
   */
  feeds?: Feed[];
  /** The job's `output` section as written, and as resolved against the model. */
  output: Record<string, string> | null;
  mapping: OutputMapping;
  rows: number;
  rejected: number;
  createdAt: string;
  files: Record<string, BundleFile>;
  manifestSha256: string;
}

export function sha256(bytes: Uint8Array | string): string {
  return crypto.createHash('sha256').update(bytes).digest('hex');
}

/** A file's sha256 and size, read in pieces (a bundle may be bigger than memory allows twice). */
export async function hashFile(file: string): Promise<BundleFile> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  for await (const chunk of fs.createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

function selfHash(manifest: Omit<Manifest, 'manifestSha256'> & { manifestSha256?: string }): string {
  const rest: Record<string, unknown> = { ...manifest };
  delete rest.manifestSha256;
  return sha256(JSON.stringify(rest));
}

/** The manifest text, its own hash filled in. */
export function manifestText(manifest: Omit<Manifest, 'manifestSha256'>): string {
  return JSON.stringify({ ...manifest, manifestSha256: selfHash(manifest) }, null, 2) + '\n';
}

/** A bundle that is missing, incomplete or changed: the message names the directory and the file. */
export class BundleError extends InputError {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

/**
 * Reads and checks a bundle directory: the manifest's own hash, then every file's size and
 * sha256 (and the model's against the model sha256). Throws BundleError naming the first
 * file that does not match. The files come back as read and checked: what is served is
 * what was hashed, whatever happens to the directory afterwards. `expectSha256`: the sha256 of manifest.json the caller trusts
 * (printed by the export), which makes an edit that recomputed the hashes fail too.
 */
export function verifyBundle(dir: string, expectSha256?: string): { manifest: Manifest; files: Map<string, Buffer> } {
  const where = `bundle ${dir}`;
  if (!fs.existsSync(dir)) {
    throw new BundleError(`${where} does not exist: export one with prescore export <job> --out ${dir}`);
  }
  if (!fs.statSync(dir).isDirectory())
    throw new BundleError(`${where} is not a directory (a bundle is a directory with ${MANIFEST})`);
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file)) {
    throw new BundleError(
      `${where}: ${MANIFEST} is missing; this is not a bundle (export one with prescore export <job> --out DIR)`,
    );
  }
  const text = fs.readFileSync(file, 'utf8');
  if (expectSha256 !== undefined && sha256(text) !== expectSha256.toLowerCase()) {
    throw new BundleError(
      `${where}: ${MANIFEST} has sha256 ${sha256(text)}, not the expected ${expectSha256}: the bundle was changed`,
    );
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text) as Manifest;
  } catch {
    throw new BundleError(`${where}: ${MANIFEST} is not valid JSON: the file is corrupted; export the bundle again`);
  }
  if (typeof manifest !== 'object' || manifest === null || manifest.format !== BUNDLE_FORMAT) {
    throw new BundleError(`${where}: ${MANIFEST} is not a ${BUNDLE_FORMAT} manifest`);
  }
  if (manifest.formatVersion !== BUNDLE_VERSION) {
    throw new BundleError(
      `${where}: format version ${String(manifest.formatVersion)} is not one this build reads (it reads ${BUNDLE_VERSION}); export it again with this version`,
    );
  }
  if (manifest.manifestSha256 !== selfHash(manifest)) {
    throw new BundleError(
      `${where}: ${MANIFEST} does not match its own sha256 (manifestSha256): the manifest was edited or corrupted; export the bundle again`,
    );
  }
  const files = new Map<string, Buffer>();
  for (const name of FILES) {
    const want = manifest.files?.[name];
    if (!want) throw new BundleError(`${where}: ${MANIFEST} lists no ${name}`);
    const at = path.join(dir, name);
    if (!fs.existsSync(at))
      throw new BundleError(`${where}: ${name} is missing (${MANIFEST} lists it with sha256 ${want.sha256})`);
    const bytes = fs.readFileSync(at);
    const got = { sha256: sha256(bytes), bytes: bytes.length };
    if (got.sha256 !== want.sha256 || got.bytes !== want.bytes) {
      throw new BundleError(
        `${where}: ${name} does not match its sha256 in ${MANIFEST} (expected ${want.sha256}, ${want.bytes} bytes; ` +
          `got ${got.sha256}, ${got.bytes} bytes): the file is corrupted or was changed; export the bundle again`,
      );
    }
    files.set(name, bytes);
  }
  if (manifest.files[MODEL_FILE]!.sha256 !== manifest.model.sha256) {
    throw new BundleError(`${where}: ${MODEL_FILE} is not the model the run scored with (sha256 ${manifest.model.sha256})`);
  }
  return { manifest, files };
}
