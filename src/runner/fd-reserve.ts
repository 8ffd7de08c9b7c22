import { closeSync, openSync } from 'node:fs';

/**
 * A reserve of file descriptors, held so that the server can still work when it reaches its
 * RLIMIT_NOFILE: a spawn that meets EMFILE/ENFILE releases it (room to answer 503, accept the
 * connections waiting, write output files, reap), and until the whole reserve could be taken back,
 * new spawns are refused at once (503 RESOURCE_EXHAUSTED) instead of failing half-way. It is taken
 * back on a timer once descriptors are free again. Costs RESERVE descriptors and, per run, one check.
 */
const RESERVE = 16;
const REFILL_MS = 100;

const held: number[] = [];
let refillTimer: NodeJS.Timeout | undefined;
let started = false;

/** Take what is missing of the reserve; true when it is whole. */
function fill(): boolean {
  while (held.length < RESERVE) {
    try {
      held.push(openSync('/dev/null', 'r')); // O_CLOEXEC: Node opens every file so
    } catch {
      return false;
    }
  }
  return true;
}

function scheduleRefill(): void {
  if (refillTimer) return;
  refillTimer = setTimeout(() => {
    refillTimer = undefined;
    if (!fill()) scheduleRefill();
  }, REFILL_MS);
  refillTimer.unref();
}

/** True when a spawn may go ahead: the reserve is whole (taken at the first call). */
export function descriptorsAvailable(): boolean {
  if (held.length === RESERVE) return true;
  if (!started) {
    started = true;
    if (fill()) return true;
  }
  scheduleRefill();
  return false;
}

/** Out of descriptors: give the reserve back to the process now; it is taken again once they are free. */
export function releaseDescriptorReserve(): void {
  while (held.length > 0) closeSync(held.pop()!);
  scheduleRefill();
}

/**
 * True when `n` descriptors are free beyond the reserve (opened and closed again to see): for a
 * synchronous step that needs them, child_process's spawn and its pipes. Node leaks the parent's
 * ends of a child's pipes when its spawn fails with EMFILE, so that spawn must never meet EMFILE.
 */
export function descriptorsFree(n: number): boolean {
  const probe: number[] = [];
  try {
    while (probe.length < n) probe.push(openSync('/dev/null', 'r'));
    return true;
  } catch {
    return false;
  } finally {
    for (const fd of probe) closeSync(fd);
  }
}

/** Descriptors held in reserve now (tests, metrics). */
export const reservedDescriptors = (): number => held.length;
