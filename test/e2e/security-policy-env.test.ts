import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { choosesConfig, loadsCode } from '../../src/security/policy-env.js';
import { CommandPolicy, type PolicyContext } from '../../src/security/policy.js';
import { applyGrant } from '../../src/security/admission.js';
import type { Scope } from '../../src/security/auth.js';
import type { RunSpec } from '../../src/runner/types.js';
import { AUTH, type TestApp } from '../helpers/app.js';
import { appWithLogs, tempDir } from '../helpers/security.js';
import { startJobsApp } from '../helpers/jobs.js';

/**
 * Env deny-by-default under a restricting rule, the wider code-loading list without a policy
 * (issue 13, item 3), maxTimeoutMs over timeoutMs + killGraceMs, and the shell-patterns warning.
 */

const dir = tempDir('execd-policy-env-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, content: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};
const ctx: PolicyContext = { childPath: '/usr/local/bin:/usr/bin:/bin', defaultCwd: '/', defaultRunAs: null };
const who = (id: string, ...scopes: Scope[]) => ({ id, scopes: new Set(scopes) });
const spec = (over: Partial<RunSpec>): RunSpec => ({ envMode: 'add', mergeStderr: false, killGraceMs: 100, maxOutputBytes: 1 << 20, ...over });

describe('env keys that make programs run commands', () => {
  it('without a policy: the issue\'s classes are refused, HOME, XDG_CONFIG_HOME and PATH pass', async () => {
    const refused = [
      'TAR_OPTIONS', 'RSYNC_RSH', 'GIT_SSH_COMMAND', 'GIT_SSH', 'GIT_EXEC_PATH', 'GIT_CONFIG_COUNT', 'GIT_CONFIG_KEY_0', 'GIT_CONFIG_VALUE_0',
      'GIT_CONFIG_GLOBAL', 'GIT_CONFIG_SYSTEM', 'GIT_CONFIG_PARAMETERS', 'GIT_DIR', 'ZDOTDIR', 'EXINIT', 'VIMINIT', 'PERL5OPT', 'PERL5LIB',
      'RUBYOPT', 'RUBYLIB', 'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS', 'npm_config_script_shell', 'NPM_CONFIG_USERCONFIG',
      'Npm_Config_Node_Options', 'PYTHONSTARTUP', 'BASH_ENV', 'ENV', 'PROMPT_COMMAND', 'LD_PRELOAD', 'LD_AUDIT', 'NODE_OPTIONS', 'EDITOR',
      'KUBECONFIG', 'AWS_CONFIG_FILE', 'RUSTC_WRAPPER', 'MAKEFLAGS',
    ];
    for (const k of refused) expect(loadsCode(k), k).toBe(true);
    for (const k of ['HOME', 'XDG_CONFIG_HOME', 'PATH', 'SHELL', 'LANG', 'TZ', 'FOO', 'GIT_AUTHOR_NAME', 'GIT_TERMINAL_PROMPT', 'NODE_ENV', 'ld_preload', 'tar_options']) {
      expect(loadsCode(k), k).toBe(false);
    }
    for (const k of ['HOME', 'XDG_CONFIG_HOME', 'PATH', 'SHELL']) expect(choosesConfig(k), k).toBe(true);
    const p = new CommandPolicy(undefined, ctx);
    const d = await p.decide(who('x', 'run'), spec({ argv: ['tar', '-tf', 'a.tar'], env: { TAR_OPTIONS: '--checkpoint=1 --checkpoint-action=exec=id', RSYNC_RSH: 'sh -c id' } }));
    expect(d).toMatchObject({ allowed: false, rule: 'code-loading-env' });
    expect(d.reasons.join('\n')).toMatch(/TAR_OPTIONS[\s\S]*RSYNC_RSH/);
    expect(await p.decide(who('x', 'run'), spec({ argv: ['true'], env: { HOME: '/tmp', XDG_CONFIG_HOME: '/tmp', PATH: '/bin' } }))).toMatchObject({ allowed: true });
  });

  describe('under a rule that restricts what runs, env keys it does not name are refused', () => {
    let policy: CommandPolicy;
    beforeAll(() => {
      policy = new CommandPolicy(
        write('tar.yaml', `
rules:
  - name: list-tarballs
    tokens: [lister]
    executables: [tar]
    args: [["-tf", "*.tar"]]
  - name: tar-with-options
    tokens: [packer]
    executables: [tar]
    env: [TAR_OPTIONS, "LC_*", "*"]
  - name: globbed
    tokens: [globber]
    executables: ["true"]
    env: ["*"]
  - name: named-home
    tokens: [homer]
    executables: ["true"]
    env: [HOME, "LC_*"]
  - name: anything-in-tmp
    tokens: [free]
    cwd: [/tmp]
`),
        ctx,
      );
    });
    const tar = (env: Record<string, string>) => spec({ argv: ['tar', '-tf', 'x.tar'], env });

    it('TAR_OPTIONS and RSYNC_RSH: refused naming the key and the rule', async () => {
      for (const key of ['TAR_OPTIONS', 'RSYNC_RSH']) {
        const d = await policy.decide(who('lister', 'run'), tar({ [key]: '--checkpoint=1 --checkpoint-action=exec=touch /tmp/pwned' }));
        expect(d, key).toMatchObject({ allowed: false, rule: 'list-tarballs' });
        expect(d.reasons.join('\n')).toContain(`rule "list-tarballs": env "${key}"`);
      }
    });

    it('any key the rule does not name (FOO, HOME, PATH…), not just the code-loading ones', async () => {
      for (const key of ['FOO', 'HOME', 'XDG_CONFIG_HOME', 'PATH', 'LANG']) {
        const d = await policy.decide(who('lister', 'run'), tar({ [key]: 'x' }));
        expect(d, key).toMatchObject({ allowed: false, rule: 'list-tarballs' });
        expect(d.reasons.join('\n')).toContain(`env "${key}"`);
      }
      expect(await policy.decide(who('lister', 'run'), tar({}))).toMatchObject({ allowed: true });
    });

    it('a key the rule names passes; code-loading keys and HOME/XDG_CONFIG_HOME/PATH need their exact name, a glob is not enough', async () => {
      expect(await policy.decide(who('packer', 'run'), tar({ TAR_OPTIONS: '-v', LC_ALL: 'C', FOO: '1' }))).toMatchObject({ allowed: true });
      expect(await policy.decide(who('packer', 'run'), tar({ RSYNC_RSH: 'x' }))).toMatchObject({ allowed: false });
      for (const key of ['HOME', 'XDG_CONFIG_HOME', 'PATH']) {
        const d = await policy.decide(who('globber', 'run'), spec({ argv: ['true'], env: { [key]: '/tmp' } }));
        expect(d, key).toMatchObject({ allowed: false, rule: 'globbed' });
      }
      expect(await policy.decide(who('globber', 'run'), spec({ argv: ['true'], env: { LANG: 'C' } }))).toMatchObject({ allowed: true });
      expect(await policy.decide(who('homer', 'run'), spec({ argv: ['true'], env: { HOME: '/tmp', LC_ALL: 'C' } }))).toMatchObject({ allowed: true });
    });

    it('a rule that restricts neither executables, args nor commands keeps ordinary keys open (code-loading ones still need naming)', async () => {
      expect(await policy.decide(who('free', 'run'), spec({ argv: ['true'], cwd: '/tmp', env: { FOO: '1', HOME: '/tmp' } }))).toMatchObject({ allowed: true });
      expect(await policy.decide(who('free', 'run'), spec({ argv: ['true'], cwd: '/tmp', env: { TAR_OPTIONS: 'x' } }))).toMatchObject({ allowed: false });
    });
  });

  describe('over HTTP', () => {
    let t: TestApp;
    const marker = join(dir, 'pwned');
    beforeAll(async () => {
      t = await startJobsApp({ EXECD_POLICY_FILE: write('http.json', { rules: [{ name: 'tar-list', executables: ['tar'], args: [['-tf', '*.tar']], cwd: [dir] }] }) });
    });
    afterAll(() => t.close());

    it('TAR_OPTIONS and RSYNC_RSH are 403 COMMAND_NOT_ALLOWED naming the key and the rule on run, subprocess and jobs; the command never runs', async () => {
      for (const key of ['TAR_OPTIONS', 'RSYNC_RSH']) {
        const env = { [key]: `--checkpoint=1 --checkpoint-action=exec=touch ${marker}` };
        for (const [route, body] of [
          ['/v1/run', { argv: ['tar', '-tf', 'x.tar'], cwd: dir, env }],
          ['/v1/subprocess/run', { args: ['tar', '-tf', 'x.tar'], cwd: dir, env }],
          ['/v1/jobs', { argv: ['tar', '-tf', 'x.tar'], cwd: dir, env }],
        ] as const) {
          const res = await t.http.post(route).set(AUTH).send(body);
          expect(res.status, `${route} ${key}`).toBe(403);
          expect(res.body).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule: 'tar-list' });
          expect(res.body.detail ?? res.body.message ?? JSON.stringify(res.body)).toContain(key);
          expect(res.body.reasons.join('\n')).toMatch(new RegExp(`rule "tar-list": env "${key}"`));
        }
      }
      expect(existsSync(marker)).toBe(false);
    });
  });
});

describe('maxTimeoutMs bounds timeoutMs + killGraceMs', () => {
  const policy = () => new CommandPolicy(write('timeout.json', { rules: [{ name: 'short', maxTimeoutMs: 1000 }] }), ctx);
  const granted = async (over: Partial<RunSpec>) => {
    const s = spec({ argv: ['true'], ...over });
    const d = await policy().decide(who('x', 'run'), s);
    const run = applyGrant(s, d.grant!);
    return { timeoutMs: run.timeoutMs, killGraceMs: run.killGraceMs };
  };

  it('lowers the timeout to the ceiling first, then the grace to what is left', async () => {
    expect(await granted({ timeoutMs: 800, killGraceMs: 500 })).toEqual({ timeoutMs: 800, killGraceMs: 200 });
    expect(await granted({ killGraceMs: 5000 })).toEqual({ timeoutMs: 1000, killGraceMs: 0 });
    expect(await granted({ timeoutMs: 60_000, killGraceMs: 100 })).toEqual({ timeoutMs: 1000, killGraceMs: 0 });
    expect(await granted({ timeoutMs: 300, killGraceMs: 100 })).toEqual({ timeoutMs: 300, killGraceMs: 100 });
    for (const [timeoutMs, killGraceMs] of [[1, 600_000], [999, 999], [1000, 1], [undefined, 0]] as const) {
      const g = await granted({ ...(timeoutMs === undefined ? {} : { timeoutMs }), killGraceMs });
      expect(g.timeoutMs! + g.killGraceMs).toBeLessThanOrEqual(1000);
    }
  });

  it('a process that ignores SIGTERM is killed by maxTimeoutMs, not maxTimeoutMs + the grace it asked for', async () => {
    const t = await startJobsApp({ EXECD_POLICY_FILE: write('timeout-http.json', { rules: [{ name: 'short', shell: true, maxTimeoutMs: 500 }] }) });
    try {
      const res = await t.http.post('/v1/run').set(AUTH).send({ command: 'trap "" TERM; sleep 30 & wait; sleep 30', timeoutMs: 400, killGraceMs: 20_000 });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
      expect(res.body.durationMs).toBeLessThan(5000);
      const explained = await t.http.post('/v1/policy/explain').set(AUTH).send({ command: 'true', timeoutMs: 400, killGraceMs: 20_000 });
      expect(explained.body.effective).toMatchObject({ timeoutMs: 400, killGraceMs: 100 });
    } finally {
      await t.close();
    }
  }, 15_000);
});

describe('a shell rule with command patterns and no executables', () => {
  const text = { rules: [{ name: 'patterns-only', shell: true, commands: ['echo *'] }, { name: 'plain-shell', shell: true }] };

  it('warns at load, naming the rule (and only that rule)', async () => {
    const p = new CommandPolicy(write('warn.json', text), ctx);
    expect(p.warnings).toHaveLength(1);
    expect(p.warnings[0]).toMatch(/rule "patterns-only" allows shell command lines by "commands" patterns/);
    const { app, entries } = await appWithLogs({ EXECD_POLICY_FILE: write('warn-app.json', text) });
    try {
      app.security.logStartup();
      const warned = entries().filter((e) => e.level === 40 && String(e.msg).includes('patterns-only'));
      expect(warned).toHaveLength(1);
      app.security.reload(); // a reload says it again
      expect(entries().filter((e) => e.level === 40 && String(e.msg).includes('patterns-only'))).toHaveLength(2);
    } finally {
      await app.close();
    }
  });
});
