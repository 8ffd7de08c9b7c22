import v8 from 'node:v8';
import vm from 'node:vm';

/** V8's `gc` with options (V8 ≥ 11): 'last-resort' is Heap::CollectAllAvailableGarbage, the memory-reducing, compacting collection. */
type Gc = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

export interface IdleTrimOptions {
  /** How often the process looks at itself. */
  intervalMs: number;
  /** Idle: at most this much CPU (user + system) used in the last interval. */
  idleCpuMs: number;
  /** Worth it: V8's heap has grown by this much since start-up or the last trim. */
  growthBytes: number;
  /** Told what each trim did (a debug line). */
  onTrim?: (info: { heapBefore: number; heapAfter: number; rssBefore: number; rssAfter: number; ms: number }) => void;
}

export const IDLE_TRIM_DEFAULTS: IdleTrimOptions = { intervalMs: 5_000, idleCpuMs: 50, growthBytes: 16 * 2 ** 20 };

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

/**
 * Give memory back once the server is idle. After a burst (thousands of runs or jobs), V8 keeps the heap it grew
 * to: the young generation stays at its largest (32 MiB) and the old one holds pages of garbage that no collection
 * comes for while nothing allocates (measured: 38 MiB live in a 91 MiB heap, 160 MiB RSS, after 10,000 jobs,
 * unchanged after minutes at rest). So every `intervalMs` this looks at the process: when it used almost no CPU
 * in that interval (idle) and its heap has grown by `growthBytes` since the last look that trimmed, it runs one
 * memory-reducing full collection, which compacts the old generation and shrinks the young one (30–200 ms, paid
 * only when idle; the figures are in docs/benchmarks.md). Nothing is dropped: only garbage is collected. A busy
 * server never pays it. The timer is unref'd. Returns a stop function.
 */
export function startIdleTrim(options: IdleTrimOptions = IDLE_TRIM_DEFAULTS): () => void {
  const gc = memoryReducingGc();
  if (!gc) return () => {};
  let lastCpu = process.cpuUsage();
  let baseline = 0; // the first idle interval trims what the start-up left
  const timer = setInterval(() => {
    const cpu = process.cpuUsage(lastCpu);
    lastCpu = process.cpuUsage();
    if ((cpu.user + cpu.system) / 1000 > options.idleCpuMs) return;
    const before = process.memoryUsage();
    if (before.heapTotal < baseline + options.growthBytes) {
      baseline = Math.min(baseline, before.heapTotal); // V8 shrank it by itself
      return;
    }
    const t0 = performance.now();
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    const after = process.memoryUsage();
    baseline = after.heapTotal;
    lastCpu = process.cpuUsage(); // the collection's own CPU is not the program's activity
    const ms = performance.now() - t0;
    options.onTrim?.({ heapBefore: before.heapTotal, heapAfter: after.heapTotal, rssBefore: before.rss, rssAfter: after.rss, ms });
  }, options.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
