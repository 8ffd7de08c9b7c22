export { startRun, startRunRetrying, type RunContext, type RunHandle } from './run.js';
export { runToCompletion, type CompletedRun } from './result.js';
export { ResourceExhaustedError, SpawnError } from './errors.js';
export { BoundedCapture, teeSinks, type OutputSink, type StreamName } from './output.js';
export { childProcessSpawner, type Spawner, type SpawnOptions, type ChildHandle } from './spawn.js';
export { killProcessGroup, terminateProcessGroup, processGroupAlive, isSignalName, signalNumber } from './terminate.js';
export { resolveExecutable } from './prepare.js';
export type { RunSpec, RunOutcome, TerminationReason } from './types.js';
