import type { JobState } from '../api';

export function ErrorLine({ text }: { text: string }) {
  return text ? <p class="error" role="alert">{text}</p> : null;
}

export function StateBadge({ state }: { state: JobState | string }) {
  return <span class={`state state-${state}`}>{state}</span>;
}
