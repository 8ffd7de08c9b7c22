import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, stopServer, type ServerProcess } from '../helpers/server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How many times a second the server's main thread was woken from sleep (its voluntary context switches), over `ms`. */
async function wakeUps(pid: number, ms: number): Promise<number> {
  const read = () => Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))![1]);
  const before = read();
  await sleep(ms);
  return ((read() - before) * 1000) / ms;
}

describe('a server at rest sleeps (main.ts, services/tiers.ts)', () => {
  let s: ServerProcess | undefined;
  afterEach(() => stopServer(s));

  it("the load-shedding sampler's 100 Hz timer runs only while there is work: off after the start, on with a request, off at the next idle look", async () => {
    s = await startServer({ EXECD_MAX_EVENT_LOOP_DELAY_MS: '1000' });
    const pid = s.child.pid!;
    await sleep(1500); // past the trim one second after the start
    expect(await wakeUps(pid, 2000)).toBeLessThan(20); // the sampler alone: ~100 a second

    expect((await s.api('/v1/info')).status).toBe(200); // work: sampling again
    expect(await wakeUps(pid, 1000)).toBeGreaterThan(60);

    // The idle trim looks every 5 s; the first look after the request still sees it, the next one finds the rest.
    let rest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 15 && rest >= 20; i++) rest = await wakeUps(pid, 1000);
    expect(rest).toBeLessThan(20);
  }, 30_000);
});
