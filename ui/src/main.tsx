import '@xterm/xterm/css/xterm.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiProblem, can, tokenStore, type Whoami } from './api';
import { events } from './events';
import { Overview } from './pages/overview';
import { Jobs } from './pages/jobs';
import { JobPage } from './pages/job';
import { RunPage } from './pages/run';
import { Processes } from './pages/processes';
import { NewTerminalButton } from './pages/new-terminal';

/** Routes live in the fragment (#/jobs/ID): the server serves one page, and nothing secret is in a URL. */
function useRoute(): string[] {
  const read = () => {
    const [path = '', query = ''] = location.hash.replace(/^#\/?/, '').split('?');
    return [...path.split('/').map(decodeURIComponent), query];
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function Login({ onLogin, error }: { onLogin: (who: Whoami) => void; error: string }) {
  const [message, setMessage] = useState(error);
  const [busy, setBusy] = useState(false);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    const input = (ev.currentTarget as HTMLFormElement).elements.namedItem('token') as HTMLInputElement;
    const token = input.value.trim();
    if (token === '') return setMessage('Paste a token.');
    setBusy(true);
    tokenStore.set(token);
    try {
      onLogin(await api<Whoami>('/v1/whoami'));
    } catch (err) {
      tokenStore.clear();
      setMessage(err instanceof ApiProblem && err.status === 401 ? 'That token is not valid.' : (err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1>execd</h1>
      <form onSubmit={submit} id="login">
        <label for="token">Bearer token</label>
        <input id="token" name="token" type="password" autocomplete="off" spellcheck={false} autofocus />
        <button type="submit" disabled={busy}>Sign in</button>
        <p class="hint">Printed at start (or EXECD_TOKEN). Kept in this tab only (sessionStorage).</p>
        {message && <p class="error" role="alert">{message}</p>}
      </form>
    </main>
  );
}

function Nav({ who, page, onLogout }: { who: Whoami; page: string; onLogout: () => void }) {
  const link = (href: string, name: string, label: string, shown = true) =>
    shown && (
      <a href={href} class={page === name ? 'active' : ''}>
        {label}
      </a>
    );
  return (
    <header class="top">
      <span class="brand">execd</span>
      <nav>
        {link('#/', '', 'Overview')}
        {link('#/jobs', 'jobs', 'Jobs', can(who, 'jobs:read'))}
        {link('#/run', 'run', 'Run', can(who, 'run') || can(who, 'jobs:write'))}
        {link('#/processes', 'processes', 'Processes', can(who, 'processes'))}
      </nav>
      <NewTerminalButton who={who} />
      <span class="who" title={`scopes: ${who.scopes.join(', ')}`}>
        token <b>{who.id}</b>
      </span>
      <button class="link" onClick={onLogout}>
        Sign out
      </button>
    </header>
  );
}

function App() {
  const [who, setWho] = useState<Whoami | null>(null);
  const [checking, setChecking] = useState(tokenStore.get() !== null);
  const [loginError, setLoginError] = useState('');
  const route = useRoute();

  useEffect(() => {
    if (!checking) return;
    api<Whoami>('/v1/whoami')
      .then(setWho, (err: unknown) => {
        tokenStore.clear();
        setLoginError(err instanceof ApiProblem && err.status === 401 ? 'The token is no longer valid.' : String((err as Error).message));
      })
      .finally(() => setChecking(false));
  }, [checking]);

  useEffect(() => {
    if (who && can(who, 'jobs:read')) events.start();
    return () => events.stop();
  }, [who]);

  if (checking) return <p class="loading">Loading…</p>;
  if (!who) return <Login onLogin={setWho} error={loginError} />;
  const logout = () => {
    tokenStore.clear();
    events.stop();
    setWho(null);
  };
  const page = route[0] ?? '';
  const arg = route.length > 2 ? route[1] : undefined;
  const query = new URLSearchParams(route[route.length - 1]);
  let body;
  if (page === 'jobs' && arg) body = <JobPage key={arg} id={arg} who={who} />;
  else if (page === 'jobs') body = <Jobs key={query.toString()} who={who} queue={query.get('queue') ?? ''} state={query.get('state') ?? ''} label={query.get('label') ?? ''} />;
  else if (page === 'run') body = <RunPage who={who} />;
  else if (page === 'processes') body = <Processes />;
  else body = <Overview who={who} />;
  return (
    <>
      <Nav who={who} page={page} onLogout={logout} />
      <main class="page">{body}</main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
