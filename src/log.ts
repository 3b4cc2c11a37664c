import fs from 'node:fs';
import { pino, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';

export type { Logger };

/** Where a log line goes: a function that writes it whole (it ends with a newline). */
export type LineWriter = (line: string) => void;

const toStderr: LineWriter = (line) => {
  fs.writeSync(2, line);
};
let lineWriter: LineWriter = toStderr;

/**
 * While a progress display owns the terminal (src/cli/progress.ts), log lines go through it,
 * so it writes them above its bars and redraws them, instead of the bar being drawn over
 * them. `null` gives stderr back.
 */
export function routeLogLines(writer: LineWriter | null): void {
  lineWriter = writer ?? toStderr;
}

/**
 * Logs go to stderr (stdout is for results). On a terminal they are pretty-printed in the
 * same process (no transport thread) and written through `routeLogLines`; elsewhere they are
 * JSON lines for the log shipper.
 */
export function createLogger(level: string): Logger {
  if (process.stderr.isTTY) {
    const pretty = prettyFactory({ colorize: true, singleLine: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss' });
    return pino(
      { level },
      {
        write(line: string) {
          const text = pretty(line);
          if (text) lineWriter(text.endsWith('\n') ? text : `${text}\n`);
        },
      },
    );
  }
  return pino({ level, base: undefined }, pino.destination({ dest: 2, sync: true }));
}

/** For library users and tests that do not want log output. */
export const silentLogger: Logger = pino({ level: 'silent' });
