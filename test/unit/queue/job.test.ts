import { describe, expect, it } from 'vitest';
import { canTransition, IllegalTransition, isTerminal, JOB_STATES, newJobRecord, transition } from '../../../src/queue/job.js';

const job = () => newJobRecord('j1', 1, 'default', { argv: ['true'] }, 1000);

describe('job transitions', () => {
  it('allows exactly the lifecycle graph', () => {
    const allowed = JOB_STATES.flatMap((from) => JOB_STATES.filter((to) => canTransition(from, to)).map((to) => `${from}->${to}`));
    expect(allowed.sort()).toEqual(
      [
        'scheduled->queued',
        'scheduled->canceled',
        'scheduled->lost',
        'running->scheduled',
        'queued->running',
        'queued->canceled',
        'queued->lost',
        'running->succeeded',
        'running->failed',
        'running->timed_out',
        'running->canceled',
        'running->lost',
      ].sort(),
    );
    expect(JOB_STATES.filter(isTerminal)).toEqual(['succeeded', 'failed', 'timed_out', 'canceled', 'lost']);
  });

  it('stamps startedAt on running and finishedAt on a terminal state', () => {
    const j = job();
    transition(j, 'running', {}, 2000);
    expect([j.state, j.startedAt, j.finishedAt]).toEqual(['running', 2000, null]);
    transition(j, 'failed', { error: { code: 'X', message: 'y' } }, 3000);
    expect([j.state, j.startedAt, j.finishedAt, j.error?.code]).toEqual(['failed', 2000, 3000, 'X']);
  });

  it('rejects illegal moves and leaves the job as it was', () => {
    const j = job();
    expect(() => transition(j, 'succeeded')).toThrow(IllegalTransition);
    transition(j, 'canceled', {}, 5);
    expect(() => transition(j, 'running')).toThrow(/canceled -> running/);
    expect([j.state, j.startedAt, j.finishedAt]).toEqual(['canceled', null, 5]);
  });
});
