import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { requestSeen, WorkSwitches } from '../../../src/services/tiers.js';

/** A real HTTP server on loopback that answers 204, and a GET to it. */
async function server(): Promise<{ srv: Server; get: () => Promise<number> }> {
  const srv = createServer((_req, res) => res.writeHead(204).end());
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as AddressInfo;
  const get = () =>
    new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      })
        .on('error', reject)
        .end();
    });
  return { srv, get };
}

describe('WorkSwitches: what a server needs only while there is work (services/tiers.ts)', () => {
  let srv: Server | null = null;
  afterEach(async () => {
    srv?.close();
    if (srv) await once(srv, 'close');
    srv = null;
  });

  it('at rest after the start; the first request turns every switch on and stops listening; each rest waits for the next request', async () => {
    const s = await server();
    srv = s.srv;
    const own = s.srv.listenerCount('request'); // the server's own handler
    const a: boolean[] = [];
    const b: boolean[] = [];
    const work = WorkSwitches.atRest(s.srv, [(on) => a.push(on), (on) => b.push(on)]);
    expect(work.on).toBe(false);
    expect(a).toEqual([false]);
    expect(s.srv.listenerCount('request')).toBe(own + 1);

    expect(await s.get()).toBe(204); // the request is answered as before
    expect(work.on).toBe(true);
    expect(s.srv.listenerCount('request')).toBe(own); // nothing more per request while busy
    expect(await s.get()).toBe(204);

    work.rest();
    work.rest(); // a second idle look: still one listener, each switch told once
    expect(work.on).toBe(false);
    expect(s.srv.listenerCount('request')).toBe(own + 1);
    expect(await s.get()).toBe(204);
    expect(work.on).toBe(true);
    expect(s.srv.listenerCount('request')).toBe(own);
    expect(a).toEqual([false, true, false, true]);
    expect(b).toEqual(a);
  });

  it('a busy look (a worker node: jobs, no requests) turns them on without a request, and drops the listener', async () => {
    const s = await server();
    srv = s.srv;
    const own = s.srv.listenerCount('request');
    const seen: boolean[] = [];
    const work = WorkSwitches.atRest(s.srv, [(on) => seen.push(on)]);
    work.busy();
    work.busy();
    expect(work.on).toBe(true);
    expect(seen).toEqual([false, true]);
    expect(s.srv.listenerCount('request')).toBe(own);
  });
});

describe('setOptimizing (services/tiers.ts)', () => {
  it('off: V8 optimizes nothing, with TurboFan or (Node 24) Maglev; on: a hot function is optimized again', () => {
    // A node of its own, tracing V8's optimizations: one function is hot while the compilers are off, another after.
    // The loop that calls them is never optimized itself (no on-stack replacement inlining them), and the "on" side
    // goes on until V8 reports the function optimized, or 20 s: a loaded machine finishes a concurrent compile late.
    const tiers = new URL('../../../src/services/tiers.ts', import.meta.url).pathname;
    const script = `
      import { setOptimizing } from ${JSON.stringify(tiers)};
      const natives = (body) => new Function('f', body); // V8's test natives (--allow-natives-syntax)
      const optimized = natives('return (%GetOptimizationStatus(f) & 16) !== 0'); // kOptimized
      natives('%NeverOptimizeFunction(f)')(drive);
      const pause = () => new Promise((r) => setTimeout(r, 100)); // a concurrent compilation would finish meanwhile
      function drive(f) { let s = 0; for (let i = 0; i < 1e6; i++) s += f(i); return s; }
      function hotWhileOff(a) { return a * 2 + 1; }
      function hotWhileOn(a) { return a * 3 + 1; }
      setOptimizing(false);
      for (let round = 0; round < 4; round++) { drive(hotWhileOff); await pause(); }
      console.log('off', optimized(hotWhileOff));
      setOptimizing(true);
      const deadline = Date.now() + 20_000;
      let rounds = 0;
      do { drive(hotWhileOn); rounds++; await pause(); } while (!optimized(hotWhileOn) && Date.now() < deadline);
      console.log('on', optimized(hotWhileOn), rounds);`;
    const r = spawnSync(
      process.execPath,
      ['--trace-opt', '--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: new URL('../../..', import.meta.url).pathname, encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^off false$/m); // nothing optimized it: not TurboFan, not Maglev
    expect(r.stdout).toMatch(/^on true \d+$/m);
    const compiled = (name: string) => new RegExp(`completed (compiling|optimizing) .*<JSFunction ${name} `).test(r.stdout);
    expect(compiled('hotWhileOff')).toBe(false);
    expect(compiled('hotWhileOn')).toBe(true);
  });
});

describe('requestSeen (services/tiers.ts)', () => {
  it('says whether a request came since the last call, with one listener that is there only until a request fires it', async () => {
    const s = await server();
    try {
      const own = s.srv.listenerCount('request');
      const requested = requestSeen(s.srv);
      expect(requested()).toBe(false);
      expect(s.srv.listenerCount('request')).toBe(own + 1);
      expect(await s.get()).toBe(204);
      expect(await s.get()).toBe(204);
      expect(s.srv.listenerCount('request')).toBe(own); // fired once, then gone: later requests pay nothing
      expect(requested()).toBe(true);
      expect(s.srv.listenerCount('request')).toBe(own + 1); // listening again from this call
      expect(requested()).toBe(false);
    } finally {
      s.srv.close();
      await once(s.srv, 'close');
    }
  });
});
