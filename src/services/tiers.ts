import type { Server } from 'node:http';
import { setFlagsFromString } from 'node:v8';

/**
 * Maglev, V8's mid-tier optimizing compiler: built into Node 24's V8, where it is on by default, and not into
 * Node 22's. `--no-opt` names TurboFan alone, so on Node 24 Maglev went on compiling the start-up's loader code and
 * the timers at rest.
 */
const MAGLEV = (process.config.variables as { v8_enable_maglev?: number }).v8_enable_maglev === 1;

/** V8's optimizing compilers on or off from now on: TurboFan, and Maglev where node has it. Code they made is kept. */
export function setOptimizing(on: boolean): void {
  setFlagsFromString(on ? '--opt' : '--no-opt');
  if (MAGLEV) setFlagsFromString(on ? '--maglev' : '--no-maglev');
}

/** Something a server needs only while there is work: told true when work comes, false at rest. */
export type WorkSwitch = (on: boolean) => void;

/**
 * What a server needs only while there is work, off at rest. V8's optimizing compilers (TurboFan, and Maglev where
 * node has it, `setOptimizing`): at rest the only JavaScript that runs is a few timers (the idle trim's look every
 * 5 s), and after ~45 s of them TurboFan compiles Node's own timer code (async_hooks' hasHooks): the compiler's
 * machine code, ~5 MiB of the node binary, is paged in for a function that saves nothing at one call a second
 * (measured: RSS at rest 75 → 81 MiB between 40 and 60 s; docs/benchmarks.md). The load-shedding sampler
 * (plugins/pressure.ts): its 100 Hz timer was most of the CPU a server at rest used. So a server at rest runs
 * without them, as during its start (main.ts), and the next request (the HTTP server's 'request' event, listened to
 * only while at rest) or the next busy look of the idle trim (a worker node's jobs come from Redis, not from
 * requests) turns them back on before the work. Code already optimized is kept either way: the flags only decide
 * whether V8 starts new compilations.
 */
export class WorkSwitches {
  private working = true;
  private readonly wake = () => this.busy();

  constructor(
    private readonly server: Server,
    private readonly switches: readonly WorkSwitch[],
  ) {}

  /** Work: every switch on (a no-op while they are). */
  busy(): void {
    if (this.working) return;
    this.working = true;
    this.server.off('request', this.wake);
    for (const on of this.switches) on(true);
  }

  /** At rest: every switch off until the next request, or the next busy look. */
  rest(): void {
    if (!this.working) return;
    this.working = false;
    for (const on of this.switches) on(false);
    this.server.once('request', this.wake);
  }

  /** Whether the switches are on. */
  get on(): boolean {
    return this.working;
  }

  /** At rest from now (the start-up's end: `--no-opt` is set already, and turning it off again costs nothing). */
  static atRest(server: Server, switches: readonly WorkSwitch[]): WorkSwitches {
    const work = new WorkSwitches(server, switches);
    work.rest();
    return work;
  }
}

/**
 * Whether the HTTP server got a request since the last call (the idle trim's quiet look). One `once` listener, armed
 * again only after it fired: requests between two calls cost nothing past the first.
 */
export function requestSeen(server: Server): () => boolean {
  let seen = false;
  const mark = () => {
    seen = true;
  };
  server.once('request', mark);
  return () => {
    if (!seen) return false;
    seen = false;
    server.once('request', mark);
    return true;
  };
}
