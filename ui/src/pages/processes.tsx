import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { bytes, duration } from '../format';
import { ErrorLine } from './common';

interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
  uid: number;
  state: string;
  name: string;
  argv: string[];
  rssBytes: number | null;
  cpuMs: number | null;
  execd?: boolean;
  jobId?: string | null;
}

/** GET /v1/processes: the host's processes; execd's own are marked, and linked to their job when the token can see it. */
export function Processes() {
  const [items, setItems] = useState<Proc[] | null>(null);
  const [onlyExecd, setOnlyExecd] = useState(false);
  const [error, setError] = useState('');
  const load = () => api<{ items: Proc[] }>('/v1/processes').then((r) => (setItems(r.items), setError('')), (e: Error) => setError(e.message));
  useEffect(() => void load(), []);
  const shown = (items ?? []).filter((p) => !onlyExecd || p.execd);
  return (
    <section>
      <h2>Processes</h2>
      <div class="toolbar">
        <label><input type="checkbox" checked={onlyExecd} onChange={(e) => setOnlyExecd((e.currentTarget as HTMLInputElement).checked)} /> execd's only</label>
        <span class="spacer" />
        <button onClick={() => void load()}>Refresh</button>
      </div>
      <ErrorLine text={error} />
      <table class="grid" id="processes">
        <thead>
          <tr><th>pid</th><th>ppid</th><th>pgid</th><th>uid</th><th>state</th><th>rss</th><th>cpu</th><th>job</th><th>command</th></tr>
        </thead>
        <tbody>
          {shown.map((p) => (
            <tr key={p.pid} class={p.execd ? 'execd' : ''} data-pid={p.pid}>
              <td>{p.pid}</td>
              <td>{p.ppid}</td>
              <td>{p.pgid}</td>
              <td>{p.uid}</td>
              <td>{p.state}</td>
              <td>{bytes(p.rssBytes)}</td>
              <td>{duration(p.cpuMs)}</td>
              <td>
                {p.jobId ? <a href={`#/jobs/${encodeURIComponent(p.jobId)}`} class="mono">{p.jobId.slice(0, 8)}</a> : p.execd ? <span class="tag">execd</span> : ''}
              </td>
              <td class="mono cmd">{p.argv.length ? p.argv.join(' ') : `[${p.name}]`}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
