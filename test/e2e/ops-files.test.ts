import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { envSchema, parseConfig } from '../../src/config.js';
import { AUTH, startApp } from '../helpers/app.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const read = (path: string) => readFileSync(`${ROOT}${path}`, 'utf8');

/** The default of a setting in envSchema (as the string an environment would give), or undefined. */
function defaultOf(key: string): string | undefined {
  const def = (envSchema.shape as Record<string, { def: { type: string; defaultValue?: unknown } }>)[key]!.def;
  if (def.type !== 'default') return undefined;
  const value = typeof def.defaultValue === 'function' ? (def.defaultValue as () => unknown)() : def.defaultValue;
  return String(value);
}

describe('.env.example', () => {
  const text = read('.env.example');
  const lines = text.split('\n');
  const assignment = /^#\s?(EXECD_[A-Z0-9_]+)=(.*)$/;

  it('lists every setting of envSchema, each with a comment line above it, and no other', () => {
    const listed = new Map<string, { value: string; comment: string }>();
    lines.forEach((line, i) => {
      const m = assignment.exec(line);
      if (!m) return;
      expect(listed.has(m[1]!), `${m[1]} listed twice`).toBe(false);
      const above = lines[i - 1] ?? '';
      expect(above.startsWith('# ') && !assignment.test(above), `${m[1]} has no comment line above it`).toBe(true);
      listed.set(m[1]!, { value: m[2]!, comment: above });
    });
    const settings = Object.keys(envSchema.shape);
    const missing = settings.filter((k) => !listed.has(k));
    expect(missing, `settings missing from .env.example: ${missing.join(', ')}`).toEqual([]);
    const unknown = [...listed.keys()].filter((k) => !settings.includes(k));
    expect(unknown, `.env.example lists settings that do not exist: ${unknown.join(', ')}`).toEqual([]);
  });

  it('shows each default as the value, and the whole file, uncommented, is a valid configuration', () => {
    const env: Record<string, string> = {};
    for (const line of lines) {
      const m = assignment.exec(line);
      if (!m) continue;
      const def = defaultOf(m[1]!);
      if (def !== undefined) expect(m[2], `${m[1]} should show its default`).toBe(def);
      env[m[1]!] = m[2]!;
    }
    expect(() => parseConfig({ ...env, EXECD_TOKEN: 'example-token-0123456789' })).not.toThrow();
  });

  it('changes nothing as it stands: every assignment is commented out', () => {
    expect(lines.filter((l) => /^EXECD_/.test(l))).toEqual([]);
  });
});

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages = instructions.filter((l) => /^FROM\s/i.test(l));
  const runtime = instructions.slice(instructions.indexOf(stages.at(-1)!));

  it('is multi-stage: a build stage with dev dependencies and tsc, a slim runtime with production dependencies only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(stages[0]).toMatch(/\sAS\s+build$/i);
    // On the newest LTS line, the one CI tests besides the oldest supported (.ci/run's NEWEST_LTS).
    const lts = /^NEWEST_LTS=(\d+)/m.exec(read('.ci/run'))?.[1];
    expect(text).toMatch(new RegExp(`^ARG NODE_IMAGE=node:${lts}-bookworm-slim$`, 'm'));
    const build = instructions.slice(0, instructions.indexOf(stages[1]!));
    expect(build.some((l) => /^RUN .*npm ci(?!.*--omit=dev)/.test(l))).toBe(true);
    expect(build.some((l) => /^RUN .*npm run build/.test(l))).toBe(true);
    expect(build.some((l) => /python3.*make.*g\+\+/.test(l))).toBe(true); // the native addon's toolchain
    expect(runtime.some((l) => /^RUN .*npm ci .*--omit=dev/.test(l))).toBe(true);
    expect(runtime.some((l) => /^COPY --from=build .*dist/.test(l))).toBe(true);
  });

  it('runs as a non-root user, under tini or dumb-init as PID 1, with HEALTHCHECK on /healthz and EXPOSE', () => {
    const user = runtime.filter((l) => /^USER\s/i.test(l)).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^USER\s+(root|0)(:|$)/i);
    const entrypoint = runtime.find((l) => /^ENTRYPOINT\s/i.test(l));
    expect(entrypoint).toMatch(/tini|dumb-init/);
    expect(runtime.some((l) => /apt-get install .*\b(tini|dumb-init)\b/.test(l))).toBe(true);
    const healthcheck = runtime.find((l) => /^HEALTHCHECK\s/i.test(l));
    expect(healthcheck).toMatch(/\/healthz/);
    expect(healthcheck).not.toMatch(/curl|wget/); // not in the slim image
    expect(runtime.some((l) => /^EXPOSE\s+8080\b/.test(l))).toBe(true);
    expect(runtime.find((l) => /^CMD\s/.test(l))).toMatch(/node.*dist\/main\.js/);
  });

  it('listens on 0.0.0.0 only with a token: the image sets EXECD_HOST=0.0.0.0 and no token, which execd refuses without one', () => {
    expect(runtime.some((l) => /^ENV .*EXECD_HOST=0\.0\.0\.0/.test(l))).toBe(true);
    expect(text).not.toMatch(/^ENV .*EXECD_TOKEN=/m);
    expect(() => parseConfig({ EXECD_HOST: '0.0.0.0' })).toThrow(/EXECD_TOKEN/);
    // Its shutdown settings are valid and fit docker stop's default 10 s.
    const env = Object.fromEntries([...text.matchAll(/(EXECD_SHUTDOWN_[A-Z_]+)=(\d+)/g)].map((m) => [m[1]!, m[2]!]));
    expect(Number(env.EXECD_SHUTDOWN_TIMEOUT_MS)).toBeLessThan(10_000);
    expect(() => parseConfig({ ...env, EXECD_HOST: '0.0.0.0', EXECD_TOKEN: 'docker-token-0123456789' })).not.toThrow();
  });

  it('.dockerignore keeps node_modules, dist, native builds and .git out of the context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const entry of ['node_modules', 'dist', 'native/build', '.git', '.env']) expect(ignored).toContain(entry);
    // What the build copies is not ignored.
    for (const copied of ['src', 'native', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) expect(ignored).not.toContain(copied);
  });
});

describe('docs', () => {
  it('the systemd unit lets execd stop its jobs (KillMode=mixed) and waits longer than the shutdown timeout', () => {
    const unit = read('docs/execd.service');
    expect(unit).toMatch(/^KillMode=mixed$/m);
    expect(unit).toMatch(/^ExecStart=\S*node dist\/main\.js$/m);
    const stop = /^TimeoutStopSec=(\d+)s?$/m.exec(unit);
    expect(stop).not.toBeNull();
    expect(Number(stop![1]) * 1000).toBeGreaterThan(Number(defaultOf('EXECD_SHUTDOWN_TIMEOUT_MS')));
  });

  it('docs/operations.md names every execd metric /metrics serves, and every operations setting', async () => {
    const page = read('docs/operations.md');
    const t = await startApp();
    try {
      const text = (await t.http.get('/metrics').set(AUTH)).text;
      const names = new Set([...text.matchAll(/^# TYPE (execd_\w+) /gm)].map((m) => m[1]!));
      expect(names.size).toBeGreaterThan(10);
      for (const name of names) expect(page, name).toContain(`\`${name}\``);
    } finally {
      await t.close();
    }
    for (const key of ['EXECD_SHUTDOWN_GRACE_MS', 'EXECD_SHUTDOWN_TIMEOUT_MS', 'EXECD_KILL_GRACE_MS', 'EXECD_INSTANCE_DIR', 'EXECD_MAX_EVENT_LOOP_DELAY_MS']) {
      expect(page).toContain(key);
    }
  });
});
