import { bearerProtocols, wsUrl, type Job } from './api';
import { reconnectDelay } from './tail';

export interface JobEvent {
  type: 'queued' | 'started' | 'finished';
  job: Job;
}
type Listener = (ev: JobEvent | { type: 'lagged' } | { type: 'connected' }) => void;

/**
 * The one /v1/events WebSocket of the page: job lifecycle events pushed by execd, shared by every view
 * (no polling). Reconnects after a drop (growing delay); a reconnect is announced as `connected`, so views
 * reload what they show, as they do on `lagged` (events dropped for a slow reader).
 */
class EventHub {
  private ws: WebSocket | null = null;
  private listeners = new Set<Listener>();
  private failures = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  live = false;

  start(): void {
    if (this.running) return;
    this.running = true;
    this.open();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close(1000);
    }
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(ev: Parameters<Listener>[0]): void {
    for (const fn of this.listeners) fn(ev);
  }

  private open(): void {
    let ws: WebSocket;
    try {
      ws = new WebSocket(wsUrl('/v1/events'), bearerProtocols());
    } catch {
      this.running = false; // a token a browser cannot send as a subprotocol: no live events (the job page says why)
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.live = true;
      this.emit({ type: 'connected' });
    };
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') return;
      try {
        this.emit(JSON.parse(m.data) as JobEvent);
      } catch {
        /* not a frame of ours */
      }
    };
    ws.onclose = () => {
      this.live = false;
      if (this.ws !== ws || !this.running) return;
      this.ws = null;
      this.failures++;
      this.timer = setTimeout(() => this.open(), reconnectDelay(this.failures));
    };
  }
}

export const events = new EventHub();
