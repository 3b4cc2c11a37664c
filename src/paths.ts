import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (where package.json and migrations/ live), from src/ or dist/src/. */
function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'migrations'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('prescore: cannot find the package root (package.json + migrations/)');
    dir = up;
  }
}

export const packageRoot = findRoot();
export const migrationsDir = path.join(packageRoot, 'migrations');
