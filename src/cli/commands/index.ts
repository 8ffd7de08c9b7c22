import type { Command } from 'commander';
import { registerCompletion } from './completion.js';
import { registerExec } from './exec.js';
import { registerExplain, registerInfo, registerPs } from './host.js';
import { registerCancel, registerJobs, registerQueues, registerRm, registerShow, registerSignal } from './jobs.js';
import { registerRun } from './run.js';
import { registerServe } from './serve.js';
import { registerSubmit } from './submit.js';
import { registerTail } from './tail.js';

/** Adds one command to the program and returns it (program.ts gives it the common options). */
export type RegisterCommand = (program: Command) => Command;

/** Every command, in the order `execd help` lists them. A new command is a module here and one line below. */
export const COMMANDS: RegisterCommand[] = [
  registerRun,
  registerSubmit,
  registerExec,
  registerTail,
  registerJobs,
  registerShow,
  registerCancel,
  registerSignal,
  registerRm,
  registerQueues,
  registerInfo,
  registerPs,
  registerServe,
  registerExplain,
  registerCompletion,
];
