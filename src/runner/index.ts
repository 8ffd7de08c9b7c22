export { startRun, startRunRetrying, type RunContext, type RunHandle } from './run.js';
export { runToCompletion, type CompletedRun } from './result.js';
export { ResourceExhaustedError, SpawnError } from './errors.js';
export { BoundedCapture, teeSinks, type OutputSink, type StreamName } from './output.js';
export { checkTtySupport, childProcessSpawner, type Spawner, type SpawnOptions, type ChildHandle } from './spawn.js';
export { killProcessGroup, terminateProcessGroup, processGroupAlive, isSignalName, signalNumber } from './terminate.js';
export { resolveExecutable } from './prepare.js';
export type { RunSpec, RunOutcome, TerminationReason, TtySize } from './types.js';
