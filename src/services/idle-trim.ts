import v8 from 'node:v8';
import vm from 'node:vm';
import { mallocTrim } from '../runner/native-addon.js';

/** V8's `gc` with options (V8 ≥ 11): 'last-resort' is Heap::CollectAllAvailableGarbage, the memory-reducing, compacting collection. */
type Gc = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

export interface IdleTrimInfo {
  heapBefore: number;
  heapAfter: number;
  rssBefore: number;
  rssAfter: number;
  ms: number;
  mallocTrimmed: boolean;
  /** The memory-reducing collection ran (else only the C heap was trimmed). */
  collected: boolean;
}

export interface IdleTrimOptions {
  /** How often the process looks at itself. */
  intervalMs: number;
  /** Idle: at most this much CPU (user + system) used in the last interval. */
  idleCpuMs: number;
  /** Worth it: V8's heap has grown by this much since start-up or the last trim. */
  growthBytes: number;
  /** Trim once right after the start (1 s, or `intervalMs` if shorter), whatever the growth: what loading and compiling left. */
  afterStart?: boolean;
  /**
   * Trims wait until the server has been at rest this long in a row (0: the first idle interval). The collection
   * shrinks the young generation, and the load that comes next pays for growing it again: 2–3 s at about twice the
   * CPU per run; the C heap's trim costs the next load less, but measurably (docs/benchmarks.md). A server busy in
   * bursts must not pay that after every lull.
   */
  restMs?: number;
  /** Told what each trim did (a debug line); `mallocTrimmed`: the C heap's free pages were given back too. */
  onTrim?: (info: IdleTrimInfo) => void;
  /** Gives the C heap's free pages back (glibc's malloc_trim(0)); true when it ran. The native addon's by default. */
  trimMalloc?: () => boolean;
  /**
   * Whether nothing happened since the last look (no request, nothing running): such a look is idle whatever the
   * CPU. The process's own timers (the load-shedding sampler's 100 Hz histogram, on until the first idle look) use
   * 2–12 ms of CPU a second depending on the machine, which on a slow one reaches `idleCpuMs`, and the rest would
   * never come.
   */
  quiet?: () => boolean;
  /** Told at each look that found the process busy (more than `idleCpuMs` in the interval, and not quiet). */
  onBusy?: () => void;
  /** Told at each look that found it idle (services/tiers.ts turns TurboFan off). */
  onIdle?: () => void;
}

export const IDLE_TRIM_DEFAULTS: IdleTrimOptions = {
  intervalMs: 5_000,
  idleCpuMs: 50,
  growthBytes: 16 * 2 ** 20,
  afterStart: true,
  restMs: 30_000,
};

/** V8's gc function, without exposing it to the program (it lives in a context of its own); null when this V8 will not give it. */
function memoryReducingGc(): Gc | null {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = vm.runInNewContext('gc');
    return typeof gc === 'function' ? (gc as Gc) : null;
  } catch {
    return null;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}

/** Code flushing flags given to node are left as they are (collectAtRest). */
const node = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
const ageGiven = /--bytecode[-_]old[-_]age\b/.test(node);
const flushGiven = /--(no-)?flush[-_]baseline[-_]code\b/.test(node);

/**
 * The memory-reducing collection, which also drops the code of every function that is not running at that moment,
 * as if it had never run: its bytecode (V8 by itself waits for 6 full collections without a call:
 * `--bytecode-old-age`), and for a function that was hot, its baseline code and what TurboFan made of it (which V8
 * by itself never drops: `--flush-baseline-code` is off by default). At rest that is the start-up's code (loading,
 * building the routes) and the last busy spell's hot paths. A function called again is compiled again, lazily, as
 * at its first call, and optimized again if it is hot again. Measured (docs/benchmarks.md): RSS at rest −1 MiB for
 * the bytecode (old age 1); with the baseline code, −1.6 MiB more both after start-up and after 20,000 jobs.
 */
function collectAtRest(gc: Gc): void {
  if (!ageGiven) v8.setFlagsFromString('--bytecode-old-age=1');
  if (!flushGiven) v8.setFlagsFromString('--flush-baseline-code');
  try {
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  } finally {
    if (!ageGiven) v8.setFlagsFromString('--bytecode-old-age=6'); // V8's default
    if (!flushGiven) v8.setFlagsFromString('--no-flush-baseline-code'); // V8's default
  }
}

/** V8's heap size: no system call (process.memoryUsage() reads /proc for the RSS, and throws EMFILE when out of fds). */
const heapTotal = (): number => v8.getHeapStatistics().total_heap_size;
/** RSS for the debug line; NaN when /proc cannot be read (out of descriptors). */
function rss(): number {
  try {
    return process.memoryUsage.rss();
  } catch {
    return Number.NaN;
  }
}

/** malloc_trim(0) through the native addon; false without it (or with an addon built before it had mallocTrim). */
function addonMallocTrim(): boolean {
  try {
    return mallocTrim();
  } catch {
    return false;
  }
}

/**
 * Give memory back once the server is idle. After a burst (thousands of runs or jobs), V8 keeps the heap it grew
 * to: the young generation stays at its largest (32 MiB) and the old one holds pages of garbage that no collection
 * comes for while nothing allocates (measured: 38 MiB live in a 91 MiB heap, 160 MiB RSS, after 10,000 jobs,
 * unchanged after minutes at rest). So every `intervalMs` this looks at the process: when it used almost no CPU
 * in that interval (idle) and has been at rest for `restMs` in a row, and its heap has grown by `growthBytes` since
 * the last look that trimmed, it runs one memory-reducing full collection, which compacts the old generation and
 * shrinks the young one (30–200 ms, paid only when idle; the figures are in docs/benchmarks.md). Then the C heap's
 * free pages go back to the system (malloc_trim(0)): glibc keeps what V8's compilers, the parser and libuv freed,
 * and a collection frees more (measured: 11 MiB of RSS at rest after start-up). With `afterStart` (the default),
 * one trim right after the start, whatever the heap's growth: loading and compiling the modules leaves both kinds
 * of garbage, and nothing is warm yet. A rest after a busy spell gives the C heap's free pages back even when
 * the heap did not grow (what TurboFan's compilations freed). Nothing is dropped: only garbage is collected. A busy
 * server never pays it. The timer is unref'd. Returns a stop function.
 */
export function startIdleTrim(options: IdleTrimOptions = IDLE_TRIM_DEFAULTS): () => void {
  const gc = memoryReducingGc(); // null: no trims, only the busy and idle looks
  let lastCpu = process.cpuUsage();
  const trimMalloc = options.trimMalloc ?? addonMallocTrim;
  let busy = false; // busy since the last trim: the C heap may hold what the work freed
  let rested = 0; // ms at rest in a row
  let baseline = 0;
  const trim = (collect: boolean) => {
    // Nothing here may throw: a timer's exception would take the server down (out of descriptors, say).
    const [heapBefore, rssBefore, t0] = [heapTotal(), rss(), performance.now()];
    if (collect && gc) collectAtRest(gc);
    const mallocTrimmed = trimMalloc();
    const [heapAfter, rssAfter, ms] = [heapTotal(), rss(), performance.now() - t0];
    busy = false;
    if (collect) {
      baseline = heapAfter;
      rested = 0; // one collection per rest
    }
    lastCpu = process.cpuUsage(); // the collection's own CPU is not the program's activity
    options.onTrim?.({ heapBefore, heapAfter, rssBefore, rssAfter, ms, mallocTrimmed, collected: collect });
  };
  // The start-up's own garbage (loading and compiling the modules), once, right after it: nothing is warm yet.
  const afterStart = options.afterStart && gc ? setTimeout(() => trim(true), Math.min(1000, options.intervalMs)) : undefined;
  afterStart?.unref();
  const timer = setInterval(() => {
    const cpu = process.cpuUsage(lastCpu);
    lastCpu = process.cpuUsage();
    const quiet = options.quiet?.() ?? false; // asked at every look: it counts from the last one
    if ((cpu.user + cpu.system) / 1000 > options.idleCpuMs && !quiet) {
      busy = true;
      rested = 0;
      options.onBusy?.();
      return;
    }
    options.onIdle?.();
    if (!gc) return;
    rested += options.intervalMs;
    // Nothing before the rest is long enough: both kinds of trim make the next load pay to grow back what they
    // gave (the collection the most).
    if (rested < (options.restMs ?? 0)) return;
    const heap = heapTotal();
    const grown = heap >= baseline + options.growthBytes;
    if (!grown) baseline = Math.min(baseline, heap); // V8 shrank it by itself
    // A heap that grew is collected; after a burst that did not grow it, the C heap alone (a millisecond).
    if (grown || busy) trim(grown);
  }, options.intervalMs);
  timer.unref();
  return () => {
    clearTimeout(afterStart);
    clearInterval(timer);
  };
}
