import { useEffect, useState } from 'preact/hooks';
import { api, can, type QueueInfo, type Whoami } from '../api';
import { events } from '../events';
import { bytes, duration } from '../format';
import { ErrorLine } from './common';

interface Info {
  pid: number;
  user: string;
  hostname: string;
  spawner: string;
  nodeVersion: string;
  uptimeMs: number;
  startedAt: string;
  queue: { backend: string; role: string; node: string | null };
  memory: { rssBytes: number };
  loadavg: number[];
  runAs: { user: string; uid: number };
}

/** Queues, refreshed when /v1/events says a job was queued, started or finished (at most every 250 ms), and the server. */
export function Overview({ who }: { who: Whoami }) {
  const [queues, setQueues] = useState<QueueInfo[] | null>(null);
  const [info, setInfo] = useState<Info | null>(null);
  const [error, setError] = useState('');

  useEffect(() => {
    if (!can(who, 'info')) return;
    api<Info>('/v1/info').then(setInfo, (e: Error) => setError(e.message));
  }, [who]);

  useEffect(() => {
    if (!can(who, 'jobs:read')) return;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let stopped = false;
    const load = () => api<QueueInfo[]>('/v1/queues').then((q) => !stopped && setQueues(q), (e: Error) => setError(e.message));
    void load();
    const off = events.subscribe(() => {
      if (timer === null) timer = setTimeout(() => ((timer = null), void load()), 250);
    });
    return () => {
      stopped = true;
      off();
      if (timer) clearTimeout(timer);
    };
  }, [who]);

  return (
    <section>
      <h2>Queues</h2>
      <ErrorLine text={error} />
      {!can(who, 'jobs:read') && <p class="muted">This token cannot read jobs (scope jobs:read).</p>}
      {queues && (
        <table class="grid" id="queues">
          <thead>
            <tr>
              {['queue', 'concurrency', 'running', 'queued', 'scheduled', 'capacity', 'processed', 'failed'].map((h) => <th>{h}</th>)}
            </tr>
          </thead>
          <tbody>
            {queues.map((q) => (
              <tr key={q.name} data-queue={q.name}>
                <td><a href={`#/jobs?queue=${encodeURIComponent(q.name)}`}>{q.name}</a></td>
                <td>{q.concurrency}</td>
                <td class="running">{q.running}</td>
                <td class="queued">{q.queued}</td>
                <td class="scheduled">{q.scheduled ?? ''}</td>
                <td>{q.capacity}</td>
                <td class="processed">{q.processed}</td>
                <td class="failed">{q.failed}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {info && (
        <>
          <h2>Server</h2>
          <dl class="facts" id="server-info">
            <dt>pid</dt><dd>{info.pid}</dd>
            <dt>user</dt><dd>{info.user}</dd>
            <dt>runs commands as</dt><dd>{info.runAs.user} ({info.runAs.uid})</dd>
            <dt>host</dt><dd>{info.hostname}</dd>
            <dt>spawner</dt><dd>{info.spawner}</dd>
            <dt>queue backend</dt><dd>{info.queue.backend}{info.queue.node ? ` (node ${info.queue.node}, role ${info.queue.role})` : ''}</dd>
            <dt>node</dt><dd>{info.nodeVersion}</dd>
            <dt>uptime</dt><dd>{duration(info.uptimeMs)}</dd>
            <dt>memory (rss)</dt><dd>{bytes(info.memory.rssBytes)}</dd>
            <dt>load</dt><dd>{info.loadavg.map((l) => l.toFixed(2)).join(' ')}</dd>
          </dl>
        </>
      )}
    </section>
  );
}
