/**
 * The closed sets the API names, as data: the schemas build their enums from
 * them, and the parts that act on them (queue/job.ts, security/auth.ts) import
 * them from here, so the schemas depend on nothing of ours.
 */

/** A job's states; queue/job.ts holds the transitions between them (`scheduled`: waiting for its start time or a retry's backoff). */
export const JOB_STATES = ['scheduled', 'queued', 'running', 'succeeded', 'failed', 'timed_out', 'canceled', 'lost'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** What a token may do (docs/security.md, "Scopes"). */
export const SCOPES = ['info', 'processes', 'run', 'jobs:read', 'jobs:write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];
