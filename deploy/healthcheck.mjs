// The image's HEALTHCHECK: node only (the image has no curl). It finds the prescore process,
// reads its role from its command line and asks it:
//   serve                           GET /readyz on --ops-port, else on --port (a bare /readyz
//                                   answers without a token); healthy on 200
//   worker | scheduler --metrics-port P   GET /metrics on P; healthy on 200
//   anything else (migrate, run, a worker without metrics)   healthy while the process runs
// PRESCORE_HEALTHCHECK_URL overrides the address asked. Exit 0: healthy, 1: not.
import fs from 'node:fs';

const TIMEOUT_MS = 4000;

/** The arguments after bin/prescore.js of the first prescore process found in /proc. */
function prescoreArgs() {
  const pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  pids.sort((a, b) => Number(a) - Number(b));
  for (const pid of pids) {
    let argv;
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    const at = argv.findIndex((a) => a.endsWith('bin/prescore.js'));
    if (at >= 0 && argv[0] !== undefined && !argv[0].endsWith('tini')) return argv.slice(at + 1).filter((a) => a !== '');
  }
  return undefined;
}

/** The value of --name V or --name=V, or undefined. */
function option(args, name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
  }
  return undefined;
}

/** A wildcard listen address is asked on loopback. */
function reachable(host) {
  if (host === undefined || host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function target(args) {
  const role = args.find((a) => !a.startsWith('-'));
  if (role === 'serve') {
    const ops = option(args, '--ops-port');
    if (ops !== undefined) return `http://${reachable(option(args, '--ops-host'))}:${ops}/readyz`;
    return `http://${reachable(option(args, '--host'))}:${option(args, '--port') ?? '8080'}/readyz`;
  }
  if (role === 'worker' || role === 'scheduler') {
    const port = option(args, '--metrics-port');
    if (port !== undefined) return `http://${reachable(option(args, '--metrics-host'))}:${port}/metrics`;
  }
  return undefined;
}

async function main() {
  let url = process.env.PRESCORE_HEALTHCHECK_URL;
  if (!url) {
    const args = prescoreArgs();
    if (args === undefined) {
      process.stderr.write('unhealthy: no prescore process found\n');
      return 1;
    }
    url = target(args);
    if (url === undefined) return 0;
  }
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const body = await res.text();
    if (res.status === 200) return 0;
    process.stderr.write(`unhealthy: ${url} answered ${res.status} ${body.slice(0, 200)}\n`);
  } catch (err) {
    process.stderr.write(`unhealthy: ${url}: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  return 1;
}

process.exitCode = await main();
