/**
 * The few error classes prescore throws on purpose. `code` is stable (scripts may match on it);
 * the message says what was detected and what to do.
 */
export class PrescoreError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PrescoreError';
    this.code = code;
  }
}

/** Bad input (job file, model, flag, data): retrying cannot fix it. */
export class InputError extends PrescoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INPUT', message, options);
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
        : `${subject}: ${problems.length} problems:\n  - ${problems.join('\n  - ')}`,
    );
    this.name = 'ValidationError';
    this.problems = problems;
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

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
