import type { FastifyInstance } from 'fastify';
import { PG, pgCode } from '../db/codes.js';
import { checkDate } from '../dates.js';
import { HttpError, InputError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { dataHeaders } from './dashboard.js';
import { checkJob, JSON_TYPE } from './http.js';
import { checkQuery } from './validate.js';
import { evaluationRangeProblem } from '../outcomes/evaluate.js';

/**
 * Model quality of a job's served predictions against its outcomes, the JSON `prescore
 * evaluate --json` prints; undefined when the job does not exist. Given by `prescore serve`,
 * which reads the job files (the API itself reads none).
 */
export type EvaluationProvider = (job: string, range: { from: string; to: string }) => Promise<unknown>;

function dateParam(query: Record<string, unknown>, name: 'from' | 'to'): string {
  const value = query[name];
  if (value === undefined) throw new HttpError(400, `${name} is required: a date YYYY-MM-DD (?from=...&to=...)`);
  if (typeof value !== 'string') throw new HttpError(400, `${name} must be one date in YYYY-MM-DD form (got several)`);
  try {
    return checkDate(value.slice(0, 40), name);
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
}

/** `GET /v1/jobs/:job/evaluation?from=&to=`: a data route, so a token for the job is needed. */
export function installEvaluation(app: FastifyInstance, options: { provider?: EvaluationProvider; log: Logger }): void {
  const { provider, log } = options;
  app.get<{ Params: { job: string }; Querystring: Record<string, unknown> }>(
    '/v1/jobs/:job/evaluation',
    async (request, reply) => {
      const { job } = request.params;
      checkQuery(request.query, ['from', 'to']);
      checkJob(job);
      const from = dateParam(request.query, 'from');
      const to = dateParam(request.query, 'to');
      const problem = evaluationRangeProblem(from, to, (name) => name);
      if (problem) throw new HttpError(400, problem);
      if (!provider) throw new HttpError(404, `job "${job}" is unknown here: this server reads no job files`);
      let result: unknown;
      try {
        result = await provider(job, { from, to });
      } catch (err) {
        if (err instanceof InputError) throw new HttpError(409, err.message);
        if (pgCode(err) === PG.queryCanceled) {
          throw new HttpError(503, `evaluating job "${job}" took too long; ask for fewer dates`);
        }
        // The job's outcomes query failing on its data (a bad cast, a division by zero): the job's to fix.
        const code = pgCode(err);
        if (code?.startsWith('22') || code?.startsWith('42')) {
          throw new HttpError(409, `job "${job}": its outcomes source fails: ${errorMessage(err)}`);
        }
        log.error({ err: errorMessage(err), job }, 'evaluation failed');
        throw new HttpError(503, 'the database is unavailable; retry later');
      }
      if (result === undefined) throw new HttpError(404, `job "${job}" does not exist`);
      return dataHeaders(reply).type(JSON_TYPE).send(JSON.stringify(result));
    },
  );
}
