import { startCli, waitFor, type TestDb } from './helpers.js';
import type { Proc } from './queue.helpers.js';

/** One sample of a metric with exactly these labels, from Prometheus text. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = (m[2] ?? '').split(',').filter(Boolean).sort().join(',');
    if (got === want) return Number(m[3]);
  }
  return undefined;
}

/** Every label set of a metric in Prometheus text. */
export function series(text: string, name: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .map((l) => l.slice(name.length).split(' ')[0]!);
}

/** A `prescore worker` or `prescore scheduler` with --metrics-port 0, and the address it printed. */
export async function startWithMetrics(
  db: TestDb,
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ proc: Proc; url: string }> {
  const proc = startCli(db, [...args, '--metrics-port', '0'], { PRESCORE_LOCK_SECONDS: '3', ...env });
  const url = await waitFor(
    `${args[0]} to print its metrics address`,
    () => {
      if (proc.exitCode() !== null) throw new Error(`${args[0]} exited: ${proc.output().stderr}`);
      return /metrics listening on (\S+)/.exec(proc.output().stdout)?.[1];
    },
    20_000,
  );
  return { proc, url };
}

export async function scrape(url: string): Promise<{ status: number; type: string; text: string }> {
  const r = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
}
