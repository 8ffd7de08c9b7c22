import { useEffect, useState } from 'preact/hooks';
import { api, can, type Job, type Whoami } from '../api';

/** The shells a new terminal may run, in order of preference: the first the policy allows is offered. */
export const SHELLS: readonly (readonly string[])[] = [['bash'], ['sh']];

/**
 * A first guess at the size of the job page's terminal in this window (13 px monospace, about 7.8 × 17 px a
 * cell, the page's margins): the job page fits it to the window and sends the exact size once the shell runs.
 */
export function initialSize(width: number, height: number): { cols: number; rows: number } {
  const cols = Math.floor((Math.min(width, 1400) - 64) / 7.8);
  const rows = Math.floor((Math.max(260, height * 0.6) - 12) / 17);
  return { cols: Math.min(500, Math.max(20, cols)), rows: Math.min(200, Math.max(5, rows)) };
}

interface Decision {
  allowed: boolean;
}

/**
 * "New terminal": a shell on a pseudo-terminal as a job (POST /v1/jobs with "tty"), whose page is then the
 * terminal. Offered only where it can work: the token has jobs:write, the policy allows a shell with "tty"
 * (POST /v1/policy/explain) and, when the token may read /v1/info, the server spawns natively (child_process
 * has no terminals). The API still decides: a refusal is shown next to the button.
 */
export function NewTerminalButton({ who }: { who: Whoami }) {
  const [shell, setShell] = useState<readonly string[] | null>(null);
  const [why, setWhy] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!can(who, 'jobs:write')) return;
    let stopped = false;
    void (async () => {
      if (can(who, 'info')) {
        const info = await api<{ spawner: string }>('/v1/info').catch(() => null);
        if (info && info.spawner !== 'native') {
          if (!stopped) setWhy(`no terminals: this server spawns with ${info.spawner} (a terminal needs the native spawner)`);
          return;
        }
      }
      for (const argv of SHELLS) {
        const d = await api<Decision>('/v1/policy/explain', { method: 'POST', body: { argv, tty: true } }).catch(() => null);
        if (stopped) return;
        if (d?.allowed) return setShell(argv);
      }
      setWhy('no terminals: the policy allows no shell ("bash", "sh") with "tty"');
    })();
    return () => {
      stopped = true;
    };
  }, [who]);

  if (!shell) return why ? <span class="muted new-terminal-off" id="no-terminal" title={why}>no terminal</span> : null;
  const open = async () => {
    setBusy(true);
    setError('');
    try {
      const job = await api<Job>('/v1/jobs', { method: 'POST', body: { argv: shell, tty: initialSize(innerWidth, innerHeight) } });
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button id="new-terminal" class="new-terminal" disabled={busy} onClick={() => void open()} title={`${shell.join(' ')} on a terminal, as a job`}>
        New terminal
      </button>
      {error && <span class="error-text" id="new-terminal-error" role="alert">{error}</span>}
    </>
  );
}
