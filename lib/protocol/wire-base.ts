import { Type, type Static } from '@sinclair/typebox';

/**
 * The building blocks of wire protocol v1's schemas (schemas.ts): ids,
 * names, tokens, the error body and a job's failure. Request objects reject
 * unknown fields (`Strict`).
 */
export const Strict = { additionalProperties: false } as const;

export const Id = Type.String({ minLength: 1, maxLength: 128 });
export const AgentId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:@-]+$' });
export const LeaseToken = Type.String({ minLength: 16, maxLength: 128 });
export const ResourceName = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._-]+$' });
export const JobType = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z][A-Za-z0-9._-]*$' });
export const PoolName = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._-]+$' });

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
});
export type ErrorBody = Static<typeof ErrorBody>;

/** A failure as carried in a result and in a job's `error`. */
export const JobError = Type.Object(
  { code: Type.String({ minLength: 1, maxLength: 64 }), message: Type.String({ maxLength: 4096 }), retryable: Type.Boolean() },
  Strict,
);
export type JobError = Static<typeof JobError>;
