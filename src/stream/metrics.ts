/**
 * Counters of the WebSocket viewers, for /metrics (prom-client reads them at
 * scrape time). Process-wide: one server per process in production. Gauges
 * go up and down; `*Total` counters only go up.
 */
export const streamMetrics = {
  /** Open viewers of GET /v1/jobs/{id}/stream. */
  jobViewers: 0,
  /** Open viewers of GET /v1/events. */
  eventViewers: 0,
  /** Viewers opened (both endpoints). */
  viewersOpenedTotal: 0,
  /** Gap frames sent: bytes not held (past maxOutputBytes, a full disk, removed), or a lag=skip viewer skipped to the live edge. */
  gapsTotal: 0,
  /** Bytes those gaps named. */
  gapBytesTotal: 0,
  /** Events not sent to slow /v1/events viewers (each run of them ends with a `lagged` frame). */
  eventsDroppedTotal: 0,
  /** Viewers terminated by the heartbeat (no pong and no progress for a whole interval). */
  deadViewersTotal: 0,
  /** Client frames answered with an `error` frame. */
  refusedFramesTotal: 0,
};

export type StreamMetrics = typeof streamMetrics;
