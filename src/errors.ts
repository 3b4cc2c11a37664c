/**
 * Every error prescore throws on purpose, with its stable code (scripts may match on it). The
 * message says what was detected and what to do. The CLI exits 2 for bad input (InputError
 * and its kinds), 3 when no worker listens on the queue (NoWorkerError: the run stays queued)
 * and 1 for everything else.
 */
export const ERROR_CODES = {
  E_INPUT: 'bad input: a job file, model, flag, date or value; retrying cannot fix it',
  E_VALIDATION: 'a job file or request with one or more problems, each named',
  E_ACTIVE_RUN: 'the (job, date) already has an active run',
  E_NO_ROWS: 'the source has no rows for the date',
  E_BAD_ROW: 'a source row the job may not score (onBadRow "fail")',
  E_RUN: 'a run failed; the previous published run keeps serving',
  E_DATABASE: 'PostgreSQL cannot be reached',
  E_EMBEDDED: 'the embedded PostgreSQL cannot start',
  E_MIGRATION: 'the database schema is not one this build knows',
  E_QUEUE: 'the queue (Redis) cannot be reached',
  E_NO_WORKER: 'no worker listens on the queue; the run stays queued for one started later',
  E_HTTP: 'an HTTP request the API refuses (4xx) or cannot answer now (503)',
  E_LOOKUP: 'a lookup the API could not answer in time',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class PrescoreError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PrescoreError';
    this.code = code;
  }
}

/** Bad input (job file, model, flag, data): retrying cannot fix it. */
export class InputError extends PrescoreError {
  constructor(message: string, options?: { cause?: unknown; code?: ErrorCode }) {
    super(options?.code ?? 'E_INPUT', message, options);
    this.name = 'InputError';
  }
}

/** Several input problems found at once: each line names the job, field and fix. */
export class ValidationError extends InputError {
  readonly problems: string[];
  constructor(subject: string, problems: string[]) {
    super(
      problems.length === 1
        ? `${subject}: ${problems[0]}`
        : `${subject}: ${problems.length} problems\n  - ${problems.join('\n  - ')}`,
      { code: 'E_VALIDATION' },
    );
    this.name = 'ValidationError';
    this.problems = problems;
  }
}

/** The (job, date) already has a run in flight: follow it, wait for it, or cancel it. */
export class ActiveRunError extends InputError {
  constructor(
    readonly job: string,
    readonly date: string,
    readonly runId: string,
  ) {
    super(`job ${job} already has an active run for ${date} (run ${runId}); wait for it or cancel it`, { code: 'E_ACTIVE_RUN' });
    this.name = 'ActiveRunError';
  }
}

/** The source has no rows for the date: nothing to score, nothing published. */
export class NoRowsError extends InputError {
  constructor(message: string) {
    super(message, { code: 'E_NO_ROWS' });
    this.name = 'NoRowsError';
  }
}

/** A source row the job may not score, with onBadRow "fail": names the key and the reason. */
export class BadRowError extends InputError {
  constructor(
    readonly key: string | null,
    readonly reason: string,
  ) {
    super(`key ${key ?? 'NULL'}: ${reason}`, { code: 'E_BAD_ROW' });
    this.name = 'BadRowError';
  }
}

/** A run failed; the previous published run keeps serving. */
export class RunError extends PrescoreError {
  readonly runId: string;
  constructor(runId: string, message: string, options?: { cause?: unknown }) {
    super('E_RUN', message, options);
    this.name = 'RunError';
    this.runId = runId;
  }
}

/** PostgreSQL cannot be reached (the message names the server, never the password). */
export class DatabaseError extends PrescoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_DATABASE', message, options);
    this.name = 'DatabaseError';
  }
}

/** The embedded PostgreSQL cannot start: the message says why and what to do. */
export class EmbeddedError extends PrescoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_EMBEDDED', message, options);
    this.name = 'EmbeddedError';
  }
}

/** The database's schema history is not one this build knows. */
export class MigrationError extends PrescoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_MIGRATION', message, options);
    this.name = 'MigrationError';
  }
}

/** The queue (Redis) cannot be reached. */
export class QueueError extends PrescoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_QUEUE', message, options);
    this.name = 'QueueError';
  }
}

/** Nothing would do a queued run: no `prescore worker` listens on the queue. The run stays queued. */
export class NoWorkerError extends PrescoreError {
  constructor(message: string) {
    super('E_NO_WORKER', message);
    this.name = 'NoWorkerError';
  }
}

/** A request the API refuses (4xx) or cannot answer now (503): the message goes to the client as {"error": ...}. */
export class HttpError extends PrescoreError {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super('E_HTTP', message);
    this.name = 'HttpError';
  }
}

/** A lookup not answered in time, or refused because too many wait already. */
export class LookupUnavailable extends PrescoreError {
  constructor(
    message: string,
    readonly overloaded = false,
  ) {
    super('E_LOOKUP', message);
    this.name = 'LookupUnavailable';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
