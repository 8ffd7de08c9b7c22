import { useEffect, useState } from 'preact/hooks';
import { api, type Job, type QueueInfo, type Whoami } from '../api';
import { events } from '../events';
import { ago, commandLine, duration } from '../format';
import { ErrorLine, StateBadge } from './common';

const STATES = ['', 'scheduled', 'queued', 'running', 'succeeded', 'failed', 'timed_out', 'canceled', 'lost'];
const PAGE = 50;
/** The newest this many matching jobs are kept for the list (GET /v1/jobs?order=desc, newest first). */
const KEPT = 1000;
/** Pages of one load at most: a filtered page on the Redis backend may stop short (its scan is bounded) with a cursor. */
const MAX_PAGES = 20;

interface JobList {
  items: Job[];
  nextCursor: string | null;
}

/**
 * The newest matching jobs, newest first: GET /v1/jobs?order=desc, following its cursor only until KEPT are
 * here (a page can hold fewer than asked while more match); `more` says whether older ones were left out.
 */
async function newestJobs(state: string, queue: string, labels: string[]): Promise<{ items: Job[]; more: boolean }> {
  const kept: Job[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < MAX_PAGES && kept.length < KEPT; page++) {
    const params = new URLSearchParams({ order: 'desc', limit: String(KEPT - kept.length) });
    if (state) params.set('state', state);
    if (queue) params.set('queue', queue);
    for (const l of labels) params.append('label', l);
    if (cursor) params.set('cursor', cursor);
    const l: JobList = await api<JobList>(`/v1/jobs?${params}`);
    kept.push(...l.items);
    cursor = l.nextCursor;
    if (!cursor) break;
  }
  return { items: kept, more: cursor !== null };
}

/** Jobs, newest first, filtered by state and queue, a page at a time (the API's cursor); rows change live from /v1/events. */
/** `k=v k2=v2` as the API's label filters. */
const labelFilters = (text: string): string[] => text.split(/\s+/).filter((l) => l.includes('='));
const hasLabels = (job: Job, filters: string[]): boolean =>
  filters.every((f) => {
    const eq = f.indexOf('=');
    return job.labels?.[f.slice(0, eq)] === f.slice(eq + 1);
  });

export function Jobs({ state, queue, label }: { who: Whoami; state: string; queue: string; label: string }) {
  const labels = labelFilters(label);
  const [list, setList] = useState<{ items: Job[]; more: boolean } | null>(null);
  const [page, setPage] = useState(0);
  const [queues, setQueues] = useState<string[]>([]);
  const [error, setError] = useState('');

  useEffect(() => {
    api<QueueInfo[]>('/v1/queues').then((q) => setQueues(q.map((x) => x.name)), () => undefined);
  }, []);

  useEffect(() => {
    let stopped = false;
    const load = () =>
      newestJobs(state, queue, labels).then(
        (l) => !stopped && (setList(l), setError('')),
        (e: Error) => setError(e.message),
      );
    void load();
    const off = events.subscribe((ev) => {
      if (ev.type === 'connected' || ev.type === 'lagged') return void load();
      if (!('job' in ev)) return;
      const job = ev.job;
      setList((l) => {
        if (!l) return l;
        const at = l.items.findIndex((j) => j.id === job.id);
        if (at >= 0) {
          if (state && job.state !== state) return { ...l, items: l.items.filter((j) => j.id !== job.id) };
          const items = l.items.slice();
          items[at] = job;
          return { ...l, items };
        }
        // A new job belongs at the top when it matches the filters.
        const matches = (!state || job.state === state) && (!queue || job.queue === queue) && hasLabels(job, labels);
        if (matches && (ev.type === 'queued' || state)) return { ...l, items: [job, ...l.items].slice(0, KEPT) };
        return l;
      });
    });
    return () => {
      stopped = true;
      off();
    };
  }, [state, queue, label]);

  const setFilter = (key: 'state' | 'queue' | 'label', value: string) => {
    const q = new URLSearchParams({ state, queue, label, [key]: value });
    for (const k of ['state', 'queue', 'label']) if (!q.get(k)) q.delete(k);
    location.hash = `#/jobs${q.size ? `?${q}` : ''}`;
  };

  return (
    <section>
      <h2>Jobs</h2>
      <div class="toolbar">
        <label>
          state{' '}
          <select id="filter-state" value={state} onChange={(e) => setFilter('state', (e.currentTarget as HTMLSelectElement).value)}>
            {STATES.map((s) => <option value={s}>{s || 'any'}</option>)}
          </select>
        </label>
        <label>
          queue{' '}
          <select id="filter-queue" value={queue} onChange={(e) => setFilter('queue', (e.currentTarget as HTMLSelectElement).value)}>
            <option value="">any</option>
            {queues.map((q) => <option value={q}>{q}</option>)}
          </select>
        </label>
        <label>
          labels{' '}
          <input id="filter-label" class="mono" size={18} placeholder="key=value …" value={label}
            onChange={(e) => setFilter('label', (e.currentTarget as HTMLInputElement).value.trim())} />
        </label>
        <span class="spacer" />
        {list && (
          <span class="muted">
            {list.items.length ? `${page * PAGE + 1}-${Math.min(list.items.length, (page + 1) * PAGE)} of ${list.items.length}` : ''}
            {list.more ? ` (the newest ${KEPT})` : ''}
          </span>
        )}
        <button id="newer" disabled={page === 0} onClick={() => setPage(page - 1)}>‹ Newer</button>
        <button id="older" disabled={!list || (page + 1) * PAGE >= list.items.length} onClick={() => setPage(page + 1)}>Older ›</button>
      </div>
      <ErrorLine text={error} />
      <table class="grid" id="jobs">
        <thead>
          <tr><th>job</th><th>state</th><th>queue</th><th>command</th><th>labels</th><th>created</th><th>took</th><th>exit</th></tr>
        </thead>
        <tbody>
          {list?.items.slice(page * PAGE, (page + 1) * PAGE).map((j) => (
            <tr key={j.id} data-job={j.id}>
              <td><a href={`#/jobs/${encodeURIComponent(j.id)}`} class="mono">{j.id.slice(0, 8)}</a></td>
              <td><StateBadge state={j.state} /></td>
              <td>{j.queue}</td>
              <td class="mono cmd">{commandLine(j.spec)}</td>
              <td class="labels">{Object.entries(j.labels ?? {}).map(([k, v]) => <span class="tag">{k}={v}</span>)}</td>
              <td title={j.createdAt}>{ago(j.createdAt)}</td>
              <td>{j.startedAt ? duration((j.finishedAt ? Date.parse(j.finishedAt) : Date.now()) - Date.parse(j.startedAt)) : ''}</td>
              <td>{j.result ? (j.result.signal ?? j.result.exitCode) : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {list && list.items.length === 0 && <p class="muted">No jobs{state || queue || label ? ' match' : ' yet'}.</p>}
    </section>
  );
}
