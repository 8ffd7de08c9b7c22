import type { RunSpec } from './types.js';

/**
 * The uid and gid the server runs as, and so every run that names no other:
 * read once (execd never changes its own credentials), not two system calls per run.
 */
export const SERVER_UID: number = process.getuid?.() ?? 0;
export const SERVER_GID: number = process.getgid?.() ?? 0;

/** The uid and gid a run ran (or runs) as: the RunSpec's, else the server's. */
export const ranAs = (spec: Pick<RunSpec, 'uid' | 'gid'>): { uid: number; gid: number } => ({
  uid: spec.uid ?? SERVER_UID,
  gid: spec.gid ?? SERVER_GID,
});
