import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * Logs go to stderr (stdout is for results). On a terminal they are pretty-printed in the
 * same process (no transport thread); elsewhere they are JSON lines for the log shipper.
 */
export function createLogger(level: string): Logger {
  if (process.stderr.isTTY) {
    return pino(
      { level },
      pretty({ destination: 2, sync: true, colorize: true, singleLine: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss' }),
    );
  }
  return pino({ level, base: undefined }, pino.destination({ dest: 2, sync: true }));
}

/** For library users and tests that do not want log output. */
export const silentLogger: Logger = pino({ level: 'silent' });
