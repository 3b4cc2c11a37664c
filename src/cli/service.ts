import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * Keeps a long-running command (worker, scheduler, serve) up until SIGTERM or SIGINT, then
 * drains it once: `stop` finishes or hands back work in flight. A second signal exits at once.
 */
export function untilSignal(log: Logger, stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'draining');
      stop()
        .catch((err: unknown) => log.error({ err: errorMessage(err) }, 'error while stopping'))
        .finally(() => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          resolve();
        });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
