import { Type, type Static } from '@sinclair/typebox';
import { JobStatus } from '../../protocol/schemas.js';

/**
 * The query-string schemas of the routes. Query values are strings (the
 * proxy's ajv coerces nothing), so a number is a digit string, read by
 * `countParam`; `''` stands for "not given", as it always has.
 */

/** The pattern of a non-negative integer query value; errors.ts words its failure. */
export const COUNT_PATTERN = '^\\d{0,9}$';
const Count = Type.String({ pattern: COUNT_PATTERN, description: 'a non-negative integer' });
/** The job statuses, from the protocol's own `JobStatus` union. */
export const JOB_STATUSES: readonly JobStatus[] = JobStatus.anyOf.map((s) => s.const);

export const JobQuery = Type.Object({ waitMs: Type.Optional(Count) });
export const JobListQuery = Type.Object({
  pool: Type.Optional(Type.String()),
  status: Type.Optional(Type.Unsafe<JobStatus>({ type: 'string', enum: [...JOB_STATUSES] })),
  limit: Type.Optional(Count),
  cursor: Type.Optional(Type.String()),
});
export const AgentListQuery = Type.Object({
  pool: Type.Optional(Type.String()),
  limit: Type.Optional(Count),
  cursor: Type.Optional(Type.String()),
});
export type JobQuery = Static<typeof JobQuery>;
export type JobListQuery = Static<typeof JobListQuery>;
export type AgentListQuery = Static<typeof AgentListQuery>;

/** A checked count parameter, capped at `max`; undefined when not given. */
export function countParam(value: string | undefined, max: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  return Math.min(Number(value), max);
}
