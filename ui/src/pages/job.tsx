import { useEffect, useRef, useState } from 'preact/hooks';
import { api, bearerProtocols, can, outputBlob, TERMINAL, tokenStore, wsUrl, type Job, type Whoami } from '../api';
import { events } from '../events';
import { bytes, commandLine, duration } from '../format';
import { OutputTail, type SocketLike, type TailStatus } from '../tail';
import { TerminalView, type View } from '../terminal';
import { ErrorLine, StateBadge } from './common';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGSTOP', 'SIGCONT', 'SIGKILL'];

/** The question a refused handshake leaves: the same URL over plain HTTP answers with the status (401, 404, 400…). */
async function probe(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(path, { headers: { authorization: `Bearer ${tokenStore.get() ?? ''}` } });
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  return { status: res.status, body };
}

/** The `tty` of a job's spec as its size, or null (no terminal). */
export function ttySize(spec: Job['spec']): { cols: number; rows: number } | null {
  const tty = spec.tty as unknown;
  if (!tty) return null;
  if (tty === true) return { cols: 80, rows: 24 };
  const { cols, rows } = tty as { cols?: unknown; rows?: unknown };
  return typeof cols === 'number' && typeof rows === 'number' ? { cols, rows } : null;
}

function Spec({ job }: { job: Job }) {
  const { argv, command, env, stdin, tty, ...rest } = job.spec;
  const size = ttySize(job.spec);
  return (
    <dl class="facts" id="spec">
      {argv && (
        <>
          <dt>argv</dt>
          <dd>
            <ol class="argv">{argv.map((a) => <li class="mono">{a}</li>)}</ol>
          </dd>
        </>
      )}
      {typeof command === 'string' && (
        <>
          <dt>command</dt>
          <dd class="mono">{command}</dd>
        </>
      )}
      {env && (
        <>
          <dt>env</dt>
          <dd class="mono">{Object.keys(env).join(' ')} <span class="muted">(values never shown)</span></dd>
        </>
      )}
      {tty !== undefined && tty !== false && (
        <>
          <dt>tty</dt>
          <dd id="spec-tty">a terminal{size ? `, ${size.cols}×${size.rows} (columns × rows) at the start` : ''}; stdin is what is typed</dd>
        </>
      )}
      {stdin !== undefined && (
        <>
          <dt>stdin</dt>
          <dd>{typeof stdin === 'object' ? 'streamed (below)' : 'given (never shown)'}</dd>
        </>
      )}
      {Object.entries(rest).map(([k, v]) => (
        <>
          <dt>{k}</dt>
          <dd class="mono">{typeof v === 'string' ? v : JSON.stringify(v)}</dd>
        </>
      ))}
    </dl>
  );
}

function Timeline({ job }: { job: Job }) {
  const steps: [string, string | null][] = [
    ['queued', job.createdAt],
    ['running', job.startedAt],
  ];
  if (TERMINAL.has(job.state)) steps.push([job.state, job.finishedAt]);
  else if (job.state !== 'queued' && job.state !== 'running') steps.push([job.state, null]);
  return (
    <ol class="timeline" id="timeline">
      {steps.map(([state, at]) => (
        <li class={at ? 'done' : 'pending'}>
          <StateBadge state={state} /> <span class="muted">{at ? new Date(at).toLocaleTimeString() : '…'}</span>
        </li>
      ))}
      {job.startedAt && (
        <li class="muted">{duration((job.finishedAt ? Date.parse(job.finishedAt) : Date.now()) - Date.parse(job.startedAt))}</li>
      )}
    </ol>
  );
}

/** Labels, the accepting node, a delayed start and each attempt (retries), when the server has them. */
function Details({ job }: { job: Job }) {
  const labels = Object.entries(job.labels ?? {});
  const attempts = job.attempts ?? [];
  if (!labels.length && !job.node && !job.runAt && attempts.length < 2 && (job.maxAttempts ?? 1) < 2) return null;
  return (
    <dl class="facts" id="details">
      {labels.length > 0 && (<><dt>labels</dt><dd class="mono">{labels.map(([k, v]) => `${k}=${v}`).join(' ')}</dd></>)}
      {job.node && (<><dt>accepted by</dt><dd class="mono">{job.node}</dd></>)}
      {job.runAt && (<><dt>queued at</dt><dd>{new Date(job.runAt).toLocaleString()}</dd></>)}
      {(job.maxAttempts ?? 1) > 1 && (<><dt>attempts</dt><dd>{job.attempt ?? 0} of {job.maxAttempts}</dd></>)}
      {attempts.map((a) => (
        <>
          <dt>attempt {a.attempt}</dt>
          <dd>
            <StateBadge state={a.state} /> on <span class="mono">{a.node}</span>, {new Date(a.startedAt).toLocaleTimeString()}
            {a.result ? `, returncode ${String(a.result.returncode)}` : ''}
          </dd>
        </>
      ))}
    </dl>
  );
}

function ExitStatus({ job }: { job: Job }) {
  const r = job.result;
  if (!r && !job.error) return null;
  return (
    <dl class="facts" id="exit-status">
      {r && (
        <>
          <dt>returncode</dt><dd>{String(r.returncode)}</dd>
          <dt>exitCode</dt><dd>{String(r.exitCode)}</dd>
          <dt>signal</dt><dd>{String(r.signal)}</dd>
          <dt>timedOut</dt><dd>{String(r.timedOut)}</dd>
          {r.durationMs !== undefined && (<><dt>duration</dt><dd>{duration(r.durationMs)}</dd></>)}
          {r.truncated && (
            <>
              <dt>truncated</dt>
              <dd>
                stdout {String(r.truncated.stdout)}{r.truncatedReason?.stdout ? ` (${r.truncatedReason.stdout})` : ''}, stderr{' '}
                {String(r.truncated.stderr)}{r.truncatedReason?.stderr ? ` (${r.truncatedReason.stderr})` : ''}
              </dd>
            </>
          )}
          {r.usage && (<><dt>usage</dt><dd class="mono">{JSON.stringify(r.usage)}</dd></>)}
        </>
      )}
      {job.error && (
        <>
          <dt>error</dt>
          <dd class="error-text">{job.error.code}: {job.error.message}{job.error.errno ? ` (${job.error.errno})` : ''}</dd>
        </>
      )}
    </dl>
  );
}

/** A job: its spec, timeline, exit status and live output (TerminalView fed by OutputTail), with its controls. */
export function JobPage({ id, who }: { id: string; who: Whoami }) {
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState('');
  const [status, setStatus] = useState<{ s: TailStatus; detail: string }>({ s: 'connecting', detail: '' });
  const [gaps, setGaps] = useState<string[]>([]);
  const [view, setView] = useState<View>('both');
  const [follow, setFollow] = useState(true);
  const [search, setSearch] = useState('');
  const [signal, setSignal] = useState('SIGINT');
  const [stdin, setStdin] = useState('');
  const [notice, setNotice] = useState('');
  /** The job runs on a terminal (its spec has "tty"): null until the job is loaded. */
  const [tty, setTty] = useState<boolean | null>(null);
  const [termSize, setTermSize] = useState<{ cols: number; rows: number } | null>(null);
  const host = useRef<HTMLDivElement>(null);
  const term = useRef<TerminalView | null>(null);
  const tail = useRef<OutputTail | null>(null);

  const reload = () =>
    api<Job>(`/v1/jobs/${encodeURIComponent(id)}`).then(
      (j) => {
        setJob(j);
        setTty((known) => known ?? ttySize(j.spec) !== null);
      },
      (e: Error) => {
        setError(e.message);
        setTty((known) => known ?? false); // the tail says why (refused) as for any job
      },
    );

  useEffect(() => {
    void reload();
    return events.subscribe((ev) => {
      if ('job' in ev && ev.job.id === id) setJob(ev.job);
    });
  }, [id]);

  // The terminal waits for the job: a tty job's output needs no \n conversion, and its terminal takes input.
  useEffect(() => {
    if (tty === null) return;
    const view = new TerminalView(host.current!, 5000, tty);
    term.current = view;
    // Keys and resizes need jobs:write (the server refuses them otherwise): a read-only token watches.
    const input = tty && can(who, 'jobs:write');
    let running = false;
    let focused = false;
    const t: OutputTail = new OutputTail({
      jobId: id,
      connect: (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike,
      probe,
      wsUrl,
      protocols: bearerProtocols,
      listener: {
        output: (stream, data) => view.output(stream, data),
        gap: (stream, from, to) => {
          const text = `${to - from} bytes of ${stream} (${from}-${to}) are gone for this view; Download has them`;
          view.marker(text, stream);
          setGaps((g) => [...g, text]);
        },
        state: (f) => {
          void reload();
          running = f.state === 'running';
          if (!input || !running) return;
          // On each (re)connection the first frame is the state: the terminal gets the size of this window.
          const { cols, rows } = view.size;
          t.sendResize(cols, rows);
          setTermSize({ cols, rows });
          if (!focused) {
            focused = true;
            view.focus();
          }
        },
        exit: () => {
          running = false;
          if (input) view.endInput();
          void reload();
        },
        error: (code, detail) => setNotice(`${code}: ${detail}`),
        status: (s, detail) => setStatus({ s, detail }),
      },
    });
    tail.current = t;
    if (input) {
      view.interactive({
        data: (text) => {
          if (!t.sendStdin(text)) setNotice(t.ended ? 'the job has ended: keys go nowhere' : 'not connected: keys not sent');
        },
        resize: (cols, rows) => {
          setTermSize({ cols, rows });
          if (running) t.sendResize(cols, rows);
        },
      });
    }
    t.start();
    const offline = () => t.disconnect();
    const online = () => t.reconnect();
    addEventListener('offline', offline);
    addEventListener('online', online);
    // For the browser tests and for the curious: what the view shows, as text.
    const exposed = {
      text: () => view.text(),
      lastLine: () => view.lastLine(),
      backlog: () => view.backlog,
      offsets: t.offsets.next,
      encoding: () => t.encoding,
      tty,
      size: () => view.size,
    };
    (window as unknown as { execdTail?: unknown }).execdTail = exposed;
    return () => {
      removeEventListener('offline', offline);
      removeEventListener('online', online);
      t.stop();
      view.dispose();
      term.current = null;
      tail.current = null;
    };
  }, [id, tty]);

  const act = async (what: 'cancel' | 'signal') => {
    setNotice('');
    try {
      if (what === 'cancel') setJob(await api<Job>(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' }));
      else {
        await api(`/v1/jobs/${encodeURIComponent(id)}/signal`, { method: 'POST', body: { signal } });
        setNotice(`${signal} sent`);
      }
    } catch (e) {
      setNotice((e as Error).message);
    }
  };

  const download = async (stream: 'stdout' | 'stderr') => {
    try {
      const blob = await outputBlob(id, stream);
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `${id}.${stream}`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (e) {
      setNotice((e as Error).message);
    }
  };

  const sendStdin = (eof: boolean) => {
    if (tail.current?.sendStdin(stdin, eof)) setStdin('');
    else setNotice('not connected: stdin not sent');
  };

  const running = job !== null && !TERMINAL.has(job.state);
  const writable = can(who, 'jobs:write');
  const streamedStdin = job !== null && typeof job.spec.stdin === 'object' && job.spec.stdin !== null && !tty;
  // Closing a terminal's input hangs it up (SIGHUP), as closing a terminal window does (docs/tty.md).
  const hangUp = () => {
    if (!tail.current?.sendStdin('', true)) setNotice('not connected: not hung up');
  };

  return (
    <section class="job">
      <div class="job-head">
        <h2>
          Job <span class="mono">{id}</span> {job && <StateBadge state={job.state} />}
        </h2>
        {job && <p class="mono cmd" id="command">{commandLine(job.spec)}</p>}
        <ErrorLine text={error} />
        {job && <Timeline job={job} />}
        {writable && running && (
          <div class="toolbar" id="controls">
            <button class="danger" id="cancel" onClick={() => void act('cancel')}>Cancel</button>
            <select id="signal" value={signal} onChange={(e) => setSignal((e.currentTarget as HTMLSelectElement).value)}>
              {SIGNALS.map((s) => <option value={s}>{s}</option>)}
            </select>
            <button id="send-signal" onClick={() => void act('signal')}>Send signal</button>
            {tty && <button id="hangup" onClick={hangUp} title="close the terminal: SIGHUP to its session">Hang up</button>}
          </div>
        )}
        {notice && <p class="notice" id="notice">{notice}</p>}
      </div>

      <div class="toolbar tail-bar">
        <span class={`status status-${status.s}`} id="tail-status" title={status.detail}>{status.s}</span>
        {tty && (
          <span class="muted" id="tty-size" title="the terminal's size, columns × rows; it follows this window">
            terminal{termSize ? ` ${termSize.cols}×${termSize.rows}` : ''}{running && writable ? ': click it and type' : ''}
          </span>
        )}
        {!tty && <select id="view" value={view} onChange={(e) => {
          const v = (e.currentTarget as HTMLSelectElement).value as View;
          setView(v);
          term.current?.setView(v);
        }}>
          <option value="both">stdout + stderr</option>
          <option value="stdout">stdout</option>
          <option value="stderr">stderr</option>
        </select>}
        <label>
          <input type="checkbox" id="follow" checked={follow} onChange={(e) => {
            const on = (e.currentTarget as HTMLInputElement).checked;
            setFollow(on);
            term.current?.setFollow(on);
          }} /> follow
        </label>
        <input id="search" type="search" placeholder="search" value={search}
          onInput={(e) => setSearch((e.currentTarget as HTMLInputElement).value)}
          onKeyDown={(e) => e.key === 'Enter' && term.current?.find(search, e.shiftKey)} />
        <button onClick={() => term.current?.find(search, true)} title="previous match">↑</button>
        <button onClick={() => term.current?.find(search)} title="next match">↓</button>
        <span class="spacer" />
        {job && <span class="muted">{bytes(job.outputBytes.stdout)} out{tty ? '' : `, ${bytes(job.outputBytes.stderr)} err`}</span>}
        <button id="download-stdout" onClick={() => void download('stdout')}>{tty ? 'Download output' : 'Download stdout'}</button>
        {!tty && <button id="download-stderr" onClick={() => void download('stderr')}>Download stderr</button>}
      </div>
      {status.s === 'refused' && <ErrorLine text={`The live tail stopped: ${status.detail}`} />}
      {gaps.length > 0 && (
        <ul class="gaps" id="gaps">{gaps.map((g) => <li>{g}</li>)}</ul>
      )}
      <div class="terminal" ref={host} id="terminal" />

      {streamedStdin && writable && running && (
        <div class="stdin" id="stdin-box">
          <textarea id="stdin" rows={2} placeholder="stdin for the job (sent as typed; Enter adds a newline)" value={stdin}
            onInput={(e) => setStdin((e.currentTarget as HTMLTextAreaElement).value)} />
          <button onClick={() => sendStdin(false)}>Send</button>
          <button onClick={() => sendStdin(true)}>Send and close stdin</button>
        </div>
      )}

      {job && (
        <div class="columns">
          <div>
            <h3>Spec</h3>
            <Spec job={job} />
            <Details job={job} />
          </div>
          <div>
            <h3>Exit status</h3>
            {TERMINAL.has(job.state) ? (
              <ExitStatus job={job} />
            ) : (
              <p class="muted">{job.state}{job.position !== null ? `, ${job.position} ahead` : ''}</p>
            )}
          </div>
        </div>
      )}
    </section>
  );
}
