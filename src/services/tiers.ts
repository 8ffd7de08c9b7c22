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

/**
 * V8's optimizing compilers (TurboFan, and Maglev where node has it) only while there is work. At rest the only
 * JavaScript that runs is a few timers (the load-shedding sampler every second, the idle trim's look every 5 s),
 * and after ~45 s of them TurboFan compiles Node's own timer code (async_hooks' hasHooks): the compiler's machine
 * code, ~5 MiB of the node binary, is paged in for a function that saves nothing at one call a second (measured:
 * RSS at rest 75 → 81 MiB between 40 and 60 s; docs/benchmarks.md). So a server at rest runs without them, as
 * during its start (main.ts), and the next request (the HTTP server's 'request' event, listened to only while at
 * rest) or the next busy look of the idle trim (a worker node's jobs come from Redis, not from requests) turns them
 * back on before the work. Code already optimized is kept either way: the flags only decide whether V8 starts new
 * compilations.
 */
export class Tiers {
  private optimizing = false;
  private readonly wake = () => this.busy();

  constructor(private readonly server: Server) {}

  /** Work: the optimizing compilers on (a no-op while they are). */
  busy(): void {
    if (this.optimizing) return;
    this.optimizing = true;
    this.server.off('request', this.wake);
    setOptimizing(true);
  }

  /** At rest: no optimizing compiler until the next request, or the next busy look. */
  rest(): void {
    if (!this.optimizing) return;
    this.optimizing = false;
    setOptimizing(false);
    this.server.once('request', this.wake);
  }

  /** Whether V8 may start optimizing compilations now. */
  get on(): boolean {
    return this.optimizing;
  }

  /** Started at rest (`--no-opt` from the start-up): armed for the first request. */
  static atRest(server: Server): Tiers {
    const tiers = new Tiers(server);
    server.once('request', tiers.wake);
    return tiers;
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
