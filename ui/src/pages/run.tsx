import { useEffect, useState } from 'preact/hooks';
import { api, ApiProblem, can, type Job, type QueueInfo, type Whoami } from '../api';
import { duration } from '../format';
import { ErrorLine } from './common';

interface Decision {
  allowed: boolean;
  rule: string;
  reasons: string[];
  effective: { user: string; uid: number; cwd: string | null; timeoutMs: number | null; maxOutputBytes: number } | null;
}
interface RunResult {
  exitCode: number | null;
  signal: string | null;
  returncode: number | null;
  timedOut: boolean;
  durationMs: number;
  stdout: string;
  stderr: string;
}

interface Form {
  mode: 'shell' | 'argv';
  command: string;
  argv: string;
  cwd: string;
  env: string;
  stdin: string;
  timeoutMs: string;
  queue: string;
  /** On a pseudo-terminal (docs/tty.md): output live and in colour, one stream; a job's page can then be typed into. */
  tty: boolean;
}

/** The CommandSpec a form describes; a line of env that is not NAME=value is an error. */
export function specOf(f: Form): { spec: Record<string, unknown>; error: string } {
  const spec: Record<string, unknown> = {};
  if (f.mode === 'shell') spec.command = f.command;
  else spec.argv = f.argv.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
  if (f.cwd.trim()) spec.cwd = f.cwd.trim();
  const env: Record<string, string> = {};
  for (const line of f.env.split('\n')) {
    if (line.trim() === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) return { spec, error: `env: "${line.slice(0, 40)}" is not NAME=value` };
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  if (Object.keys(env).length) spec.env = env;
  if (f.stdin !== '') spec.stdin = f.stdin;
  if (f.tty) spec.tty = true;
  if (f.timeoutMs.trim()) {
    const n = Number(f.timeoutMs);
    if (!Number.isInteger(n) || n < 0) return { spec, error: 'timeout: a whole number of milliseconds' };
    spec.timeoutMs = n;
  }
  return { spec, error: '' };
}

/** Run a command now (POST /v1/run) or submit it as a job; POST /v1/policy/explain says first whether it may run, and why. */
export function RunPage({ who }: { who: Whoami }) {
  const [f, setF] = useState<Form>({ mode: 'shell', command: '', argv: '', cwd: '', env: '', stdin: '', timeoutMs: '', queue: 'default', tty: false });
  const [queues, setQueues] = useState<string[]>([]);
  const [decision, setDecision] = useState<Decision | null>(null);
  const [result, setResult] = useState<RunResult | null>(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const { spec, error: formError } = specOf(f);
  const empty = f.mode === 'shell' ? f.command.trim() === '' : f.argv.trim() === '';

  useEffect(() => {
    if (can(who, 'jobs:read')) api<QueueInfo[]>('/v1/queues').then((q) => setQueues(q.map((x) => x.name)), () => undefined);
  }, [who]);

  // Ask the policy after each pause in typing.
  useEffect(() => {
    setDecision(null);
    if (empty || formError) return;
    const ctl = new AbortController();
    const timer = setTimeout(() => {
      api<Decision>('/v1/policy/explain', { method: 'POST', body: spec, signal: ctl.signal }).then(setDecision, (e: unknown) => {
        if (!ctl.signal.aborted) setDecision({ allowed: false, rule: '', reasons: [(e as Error).message], effective: null });
      });
    }, 300);
    return () => (clearTimeout(timer), ctl.abort());
  }, [JSON.stringify(spec), empty, formError]);

  const set = (k: keyof Form) => (e: Event) => setF({ ...f, [k]: (e.currentTarget as HTMLInputElement).value });

  const run = async () => {
    setBusy(true);
    setError('');
    setResult(null);
    try {
      setResult(await api<RunResult>('/v1/run', { method: 'POST', body: spec }));
    } catch (e) {
      const body = e instanceof ApiProblem ? (e.body.result as RunResult | undefined) : undefined;
      if (body) setResult(body);
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const submit = async () => {
    setBusy(true);
    setError('');
    try {
      const job = await api<Job>('/v1/jobs', { method: 'POST', body: { ...spec, queue: f.queue || undefined } });
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="run">
      <h2>Run a command</h2>
      <form class="form" onSubmit={(e) => e.preventDefault()} id="run-form">
        <div class="row">
          <label><input type="radio" name="mode" checked={f.mode === 'shell'} onChange={() => setF({ ...f, mode: 'shell' })} /> shell line (/bin/sh -c)</label>
          <label><input type="radio" name="mode" checked={f.mode === 'argv'} onChange={() => setF({ ...f, mode: 'argv' })} /> argv (one argument a line, no shell)</label>
        </div>
        {f.mode === 'shell' ? (
          <input id="command-input" class="mono" placeholder="for i in 1 2 3; do echo $i; sleep 1; done" value={f.command} onInput={set('command')} />
        ) : (
          <textarea id="argv-input" class="mono" rows={4} placeholder={'ls\n-l\n/tmp'} value={f.argv} onInput={set('argv')} />
        )}
        <label>cwd <input class="mono" value={f.cwd} onInput={set('cwd')} placeholder="server default" /></label>
        <label>env (NAME=value a line) <textarea class="mono" rows={2} value={f.env} onInput={set('env')} /></label>
        <label>stdin <textarea class="mono" rows={2} value={f.stdin} onInput={set('stdin')} /></label>
        <div class="row">
          <label>timeout (ms) <input value={f.timeoutMs} onInput={set('timeoutMs')} placeholder="server default" size={10} /></label>
          <label title="a pseudo-terminal: output line by line and in colour, stderr merged into stdout; a job's page can be typed into">
            <input type="checkbox" id="tty-input" checked={f.tty} onChange={(e) => setF({ ...f, tty: (e.currentTarget as HTMLInputElement).checked })} /> on a terminal (tty)
          </label>
          {can(who, 'jobs:write') && (
            <label>
              queue{' '}
              {queues.length ? (
                <select value={f.queue} onChange={set('queue')}>{queues.map((q) => <option value={q}>{q}</option>)}</select>
              ) : (
                <input value={f.queue} onInput={set('queue')} size={10} />
              )}
            </label>
          )}
        </div>
        <ErrorLine text={formError} />
        <div class="policy" id="policy">
          {empty ? <span class="muted">The policy's answer shows here.</span>
            : !decision ? <span class="muted">Asking the policy…</span>
            : (
              <>
                <b class={decision.allowed ? 'ok' : 'error-text'}>{decision.allowed ? 'allowed' : 'refused'}</b>
                {decision.rule && <> by rule <span class="mono">{decision.rule}</span></>}
                {decision.effective && <> — runs as {decision.effective.user} ({decision.effective.uid}){decision.effective.timeoutMs ? `, timeout ${duration(decision.effective.timeoutMs)}` : ''}</>}
                <ul>{decision.reasons.map((r) => <li>{r}</li>)}</ul>
              </>
            )}
        </div>
        <div class="row">
          {can(who, 'run') && <button id="run-now" disabled={busy || empty || !!formError || decision?.allowed === false} onClick={() => void run()}>Run now</button>}
          {can(who, 'jobs:write') && <button id="submit-job" disabled={busy || empty || !!formError || decision?.allowed === false} onClick={() => void submit()}>Submit as job</button>}
        </div>
      </form>
      <ErrorLine text={error} />
      {result && (
        <div id="run-result">
          <p>
            returncode <b>{String(result.returncode)}</b>{result.signal ? ` (${result.signal})` : ''}{result.timedOut ? ', timed out' : ''}, {duration(result.durationMs)}
          </p>
          <h3>stdout</h3>
          <pre class="output">{result.stdout}</pre>
          {result.stderr && (<><h3>stderr</h3><pre class="output">{result.stderr}</pre></>)}
        </div>
      )}
    </section>
  );
}
