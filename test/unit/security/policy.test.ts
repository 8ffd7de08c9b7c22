import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config.js';
import { canSee, hasScope, SCOPES, TokenStore, type Principal, type Scope } from '../../../src/security/auth.js';
import { lookupUser } from '../../../src/security/identity.js';
import { CommandPolicy, type PolicyContext } from '../../../src/security/policy.js';
import { loadsCode } from '../../../src/security/policy-env.js';
import { applyGrant } from '../../../src/security/admission.js';
import { compileGlob, GlobSyntaxError } from '../../../src/security/policy-glob.js';
import { RateLimiter } from '../../../src/security/ratelimit.js';
import type { RunSpec } from '../../../src/runner/types.js';

const FIXTURES = new URL('../../fixtures/', import.meta.url).pathname;
const PATH = '/usr/local/bin:/usr/bin:/bin';
const ctx: PolicyContext = { childPath: PATH, defaultCwd: '/', defaultRunAs: null };

const who = (id: string, ...scopes: Scope[]): Principal => ({ id, scopes: new Set(scopes) });
const spec = (over: Partial<RunSpec>): RunSpec => ({ envMode: 'add', mergeStderr: false, killGraceMs: 100, maxOutputBytes: 1 << 20, ...over });

const dir = mkdtempSync(join(tmpdir(), 'execd-policy-'));
const write = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

beforeAll(() => {
  mkdirSync(join(dir, 'app/sub'), { recursive: true });
  mkdirSync(join(dir, 'other'));
  symlinkSync(join(dir, 'other'), join(dir, 'app/escape'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('glob patterns (linear time, no backtracking)', () => {
  it('matches *, ?, classes and escapes, anchored', () => {
    const cases: Array<[string, string, boolean]> = [
      ['app-*.service', 'app-web.service', true],
      ['app-*.service', 'app-web.service; rm -rf /', false],
      ['app-*.service', 'xapp-web.service', false],
      ['*', '', true],
      ['?', 'é', true],
      ['?', '😀', true],
      ['??', '😀', false],
      ['[0-9]*', '42', true],
      ['[0-9]*', 'x42', false],
      ['[!-]*', '--force', false],
      ['[!-]*', 'main', true],
      ['\\*', '*', true],
      ['\\*', 'x', false],
      ['a*b*c', 'aXXbYYc', true],
      ['a*b*c', 'aXXbYY', false],
      ['--branch=*', '--branch=main', true],
      ['', '', true],
      ['', 'x', false],
    ];
    for (const [pattern, input, want] of cases) expect(compileGlob(pattern).matches(input), `${pattern} ~ ${input}`).toBe(want);
  });

  it('refuses malformed patterns', () => {
    expect(() => compileGlob('[abc')).toThrow(GlobSyntaxError);
    expect(() => compileGlob('abc\\')).toThrow(GlobSyntaxError);
    expect(() => compileGlob('[z-a]')).toThrow(GlobSyntaxError);
  });

  it('stays fast on inputs that make backtracking matchers explode', () => {
    // /^(a*)*b$/-style blowup: many stars against a long non-matching input.
    const g = compileGlob('*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b');
    const input = 'a'.repeat(100_000);
    const t0 = performance.now();
    expect(g.matches(input)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(2000);
    const evil = new RegExp('^(a*)*b$');
    expect(typeof evil).toBe('object'); // the RegExp equivalent is never used: it would take forever on this input
  });
});

describe('code-loading environment keys', () => {
  it('knows the loader, shell and interpreter hooks, and leaves ordinary keys alone', () => {
    for (const k of ['LD_PRELOAD', 'LD_LIBRARY_PATH', 'LD_AUDIT', 'NODE_OPTIONS', 'BASH_ENV', 'ENV', 'PYTHONSTARTUP', 'PYTHONPATH', 'PERL5OPT', 'RUBYOPT', 'GCONV_PATH', 'BASH_FUNC_x%%', 'GIT_SSH_COMMAND', 'JAVA_TOOL_OPTIONS']) {
      expect(loadsCode(k), k).toBe(true);
    }
    for (const k of ['HOME', 'LANG', 'PATH', 'FOO', 'NODE_ENV', 'PYTHONUNBUFFERED', 'ld_preload']) expect(loadsCode(k), k).toBe(false);
  });
});

describe('tokens file', () => {
  it('reads YAML with plain and sha256 tokens, scopes per id; EXECD_TOKEN holds every scope', () => {
    const store = new TokenStore(['env-token-0123456789'], join(FIXTURES, 'policy-tokens.yaml'));
    expect(store.authenticate('env-token-0123456789')).toMatchObject({ id: 'env' });
    expect([...store.authenticate('env-token-0123456789')!.scopes].sort()).toEqual([...SCOPES].sort());
    const reader = store.authenticate('reader-token-0123456789')!;
    expect(reader.id).toBe('reader');
    expect(hasScope(reader, 'info')).toBe(true);
    expect(hasScope(reader, 'run')).toBe(false);
    expect(store.authenticate('deploy-token-0123456789')?.id).toBe('deploy-bot');
    expect(store.authenticate('deploy-token-012345678')).toBeNull();
    expect(store.authenticate('')).toBeNull();
  });

  it('reads JSON too, and reload() swaps the tokens in place', () => {
    const p = write('tokens.json', JSON.stringify([{ id: 'a', token: 'aaaaaaaaaaaaaaaa1', scopes: ['info'] }]));
    chmodSync(p, 0o600);
    const store = new TokenStore([], p);
    expect(store.authenticate('aaaaaaaaaaaaaaaa1')?.id).toBe('a');
    expect(store.warnings).toEqual([]);
    writeFileSync(p, JSON.stringify({ tokens: [{ id: 'b', token: 'bbbbbbbbbbbbbbbb1', scopes: ['run'] }] }));
    store.reload();
    expect(store.authenticate('aaaaaaaaaaaaaaaa1')).toBeNull();
    expect(store.authenticate('bbbbbbbbbbbbbbbb1')?.id).toBe('b');
    // A broken file keeps what was in force.
    writeFileSync(p, '[{"id": "c", "token": "short", "scopes": ["run"]}]');
    expect(() => store.reload()).toThrow(ConfigError);
    expect(store.authenticate('bbbbbbbbbbbbbbbb1')?.id).toBe('b');
  });

  it('names the bad entry but never echoes a token', () => {
    const secret = 'sekrit-token-value-0123456789';
    const bad: Array<[unknown, RegExp]> = [
      [[{ id: 'x', token: secret, scopes: ['root'] }], /0\.scopes\.0/],
      [[{ id: 'x', token: secret, sha256: 'a'.repeat(64), scopes: ['run'] }], /exactly one of "token" and "sha256"/],
      [[{ id: 'env', token: secret, scopes: ['run'] }], /reserved/],
      [[{ id: 'x', token: secret, scopes: ['run'] }, { id: 'x', token: `${secret}2`, scopes: ['run'] }], /appears twice/],
      [[{ id: 'x', token: secret, scopes: ['run'] }, { id: 'y', token: secret, scopes: ['run'] }], /same token/],
      [[{ id: 'x', token: secret, scopes: ['run'], extra: 1 }], /0/],
      [{ tokens: 'nope' }, /tokens|list/],
    ];
    for (const [content, want] of bad) {
      const p = write('bad.json', JSON.stringify(content));
      let message = '';
      try {
        new TokenStore([], p);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        message = (err as Error).message;
      }
      expect(message).toMatch(want);
      expect(message).not.toContain(secret);
    }
    const p = write('bad.yaml', `- id: x\n  token: ${secret}\n  scopes: [run\n`);
    expect(() => new TokenStore([], p)).toThrow(/not valid JSON or YAML/);
    try {
      new TokenStore([], p);
    } catch (err) {
      expect((err as Error).message).not.toContain(secret);
    }
  });

  it('warns about a world-readable file of plain tokens', () => {
    const p = write('open.json', JSON.stringify([{ id: 'a', token: 'aaaaaaaaaaaaaaaa1', scopes: ['info'] }]));
    chmodSync(p, 0o644);
    expect(new TokenStore([], p).warnings.join()).toMatch(/chmod 600/);
  });

  it('canSee: the owner, or admin; an ownerless job only to admins', () => {
    expect(canSee(who('a', 'jobs:read'), 'a')).toBe(true);
    expect(canSee(who('b', 'jobs:read'), 'a')).toBe(false);
    expect(canSee(who('b', 'admin'), 'a')).toBe(true);
    expect(canSee(who('a', 'jobs:read'), null)).toBe(false);
    expect(canSee(who('x', 'admin'), undefined)).toBe(true);
  });
});

describe('command policy', () => {
  const deployPolicy = () => {
    const text = `
rules:
  - name: deploy
    tokens: [deploy-bot]
    executables: [git, /bin/printf, "true"]
    args:
      - [pull, --ff-only]
      - [log, --oneline, "-n", "[1-9]", "..."]
      - ["%s", "..."]
      - []
    cwd: [${join(dir, 'app')}]
    env: [GIT_SSH_COMMAND, "LC_*"]
    maxTimeoutMs: 1000
    maxOutputBytes: 4096
    limits: { processes: 64, cpuSeconds: 10 }
  - name: runners
    scopes: [run]
    shell: true
    commands: ["echo *", "true"]
  - name: everyone
    executables: [echo]
`;
    return new CommandPolicy(write('policy.yaml', text), ctx);
  };
  const bot = who('deploy-bot', 'run', 'jobs:write');
  const app = join(dir, 'app');

  it('allows what a rule allows, naming it, with its ceilings applied', async () => {
    const p = deployPolicy();
    const d = await p.decide(bot, spec({ argv: ['git', 'pull', '--ff-only'], cwd: app, timeoutMs: 60_000, limits: { processes: 1000, openFiles: 10 } }));
    expect(d).toMatchObject({ allowed: true, rule: 'deploy' });
    expect(d.grant).toMatchObject({ rule: 'deploy', timeoutMs: 1000, maxOutputBytes: 4096, limits: { processes: 64, cpuSeconds: 10, openFiles: 10 } });
    const run = applyGrant(spec({ argv: ['git'], cwd: app }), d.grant!);
    expect(run).toMatchObject({ timeoutMs: 1000, maxOutputBytes: 4096, limits: { processes: 64 } });
  });

  it('refuses other executables, arguments, shells, env keys and cwds, naming the rule and why', async () => {
    const p = deployPolicy();
    const cases: Array<[Partial<RunSpec>, RegExp]> = [
      [{ argv: ['rm', '-rf', '/'], cwd: app }, /executable "rm" is not one the rule allows/],
      [{ argv: ['git', 'push', '--force'], cwd: app }, /arguments of "git" match none/],
      [{ argv: ['git', 'pull', '--ff-only', '--upload-pack=touch /tmp/x'], cwd: app }, /arguments/],
      [{ argv: ['git', 'log', '--oneline', '-n', '10'], cwd: app }, /arguments/],
      [{ command: 'git pull --ff-only', cwd: app }, /shell commands are not allowed/],
      [{ argv: ['/bin/sh', '-c', 'git pull'], cwd: app }, /shell commands are not allowed/],
      [{ argv: ['git', 'pull', '--ff-only'], cwd: join(dir, 'other') }, /outside the rule's directories/],
      [{ argv: ['git', 'pull', '--ff-only'], cwd: join(app, '..', 'other') }, /outside/],
      [{ argv: ['git', 'pull', '--ff-only'], cwd: join(app, 'escape') }, /outside/], // a symlink out of the root
      [{ argv: ['git', 'pull', '--ff-only'], cwd: join(app, 'missing') }, /does not exist/],
      [{ argv: ['git', 'pull', '--ff-only'] }, /outside/], // the default cwd is not under the root
      [{ argv: ['git', 'pull', '--ff-only'], cwd: app, env: { LD_PRELOAD: '/tmp/x.so' } }, /LD_PRELOAD.*load code/],
      [{ argv: ['git', 'pull', '--ff-only'], cwd: app, env: { FOO: '1' } }, /env "FOO" is not among/],
      // PATH pointing elsewhere makes "git" another file: refused, whatever its name.
      [{ argv: ['git', 'pull', '--ff-only'], cwd: app, env: { PATH: join(dir, 'bin') } }, /PATH|git/],
    ];
    for (const [s, why] of cases) {
      const d = await p.decide(bot, spec(s));
      expect(d.allowed, JSON.stringify(s)).toBe(false);
      expect(d.rule).toBe('deploy');
      expect(d.reasons.join('\n'), JSON.stringify(s)).toMatch(why);
    }
  });

  it('allows deeper cwds, named code-loading keys, "..." rest args, /bin vs /usr/bin, and an empty args pattern', async () => {
    const p = deployPolicy();
    for (const s of [
      { argv: ['git', 'pull', '--ff-only'], cwd: join(app, 'sub') },
      { argv: ['git', 'pull', '--ff-only'], cwd: join(app, 'sub', '..') },
      { argv: ['git', 'pull', '--ff-only'], cwd: app, env: { GIT_SSH_COMMAND: 'ssh -i key', LC_ALL: 'C' } },
      { argv: ['git', 'log', '--oneline', '-n', '5', '--', 'README'], cwd: app },
      { argv: ['/usr/bin/printf', '%s', 'a', 'b'], cwd: app },
      { argv: ['printf', '%s'], cwd: app },
      { argv: ['true'], cwd: app },
    ] as Array<Partial<RunSpec>>) {
      const d = await p.decide(bot, spec(s));
      expect(d.reasons, JSON.stringify(s)).toEqual(['allowed by rule "deploy"']);
    }
    // the cwd is pinned to its realpath
    const d = await p.decide(bot, spec({ argv: ['true'], cwd: join(app, 'sub', '..') }));
    expect(d.grant!.cwd).toBe(app);
  });

  it('a token named by a rule is governed by its rules only; scopes next; then general rules', async () => {
    const p = deployPolicy();
    // the bot holds run, but "runners" does not apply to it: it is named by "deploy"
    expect((await p.decide(bot, spec({ command: 'echo hi' }))).allowed).toBe(false);
    const alice = who('alice', 'run');
    expect(await p.decide(alice, spec({ command: 'echo hi' }))).toMatchObject({ allowed: true, rule: 'runners' });
    expect(await p.decide(alice, spec({ command: 'echo hi; rm -rf /' }))).toMatchObject({ allowed: true }); // "echo *" is a glob over the whole line: docs warn
    expect(await p.decide(alice, spec({ command: 'rm -rf /' }))).toMatchObject({ allowed: false, rule: 'runners' });
    const viewer = who('viewer', 'jobs:write');
    expect(await p.decide(viewer, spec({ argv: ['echo', 'x'] }))).toMatchObject({ allowed: true, rule: 'everyone' });
    expect(await p.decide(viewer, spec({ argv: ['true'] }))).toMatchObject({ allowed: false, rule: 'everyone' });
  });

  it('with a policy and no applicable rule, refuses by default', async () => {
    const p = new CommandPolicy(write('only-bot.json', JSON.stringify({ rules: [{ name: 'bot', tokens: ['bot'] }] })), ctx);
    expect(await p.decide(who('someone', 'run'), spec({ argv: ['true'] }))).toMatchObject({ allowed: false, rule: 'default-deny' });
    expect(await p.decide(who('bot', 'run'), spec({ argv: ['anything'] }))).toMatchObject({ allowed: true, rule: 'bot' });
  });

  it('without a policy allows everything but code-loading env keys', async () => {
    const p = new CommandPolicy(undefined, ctx);
    expect(await p.decide(who('x', 'run'), spec({ command: 'rm -rf /nonexistent' }))).toMatchObject({ allowed: true, rule: 'no-policy' });
    const d = await p.decide(who('x', 'run'), spec({ argv: ['true'], env: { LD_PRELOAD: '/x.so', NODE_OPTIONS: '--require /x.js' } }));
    expect(d).toMatchObject({ allowed: false, rule: 'code-loading-env' });
    expect(d.reasons).toHaveLength(2);
    // subprocess env= (replace mode) is checked the same way
    expect((await p.decide(who('x', 'run'), spec({ argv: ['true'], envMode: 'replace', env: { BASH_ENV: '/x' } }))).allowed).toBe(false);
  });

  it('refuses lone surrogates (400): they could not reach the program byte for byte', async () => {
    const p = new CommandPolicy(undefined, ctx);
    await expect(p.decide(who('x', 'run'), spec({ argv: ['echo', 'a\ud800'] }))).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  it('rejects a malformed policy naming the rule and field', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ rules: [{ name: 'r', executables: 'git' }] }, /rules\.0\.executables/],
      [{ rules: [{ name: 'r', args: [['[oops']] }] }, /rules\.0 \(r\) args\.0\.0: .*unclosed/],
      [{ rules: [{ name: 'r' }, { name: 'r' }] }, /appears twice/],
      [{ rules: [{ name: 'no-policy' }] }, /reserved/],
      [{ rules: [{ name: 'r', runAs: 'no-such-user-here' }] }, /no user "no-such-user-here"/],
      [{ rules: [{ name: 'r', cwd: ['relative'] }] }, /absolute/],
      [{ rules: [{ name: 'r', typo: true }] }, /rules\.0/],
      [{ rule: [] }, /rule|rules/],
    ];
    for (const [content, want] of bad) {
      expect(() => new CommandPolicy(write('bad-policy.json', JSON.stringify(content)), ctx)).toThrow(want);
    }
  });

  it('loads the deploy-bot example of docs/security.md', () => {
    const p = new CommandPolicy(join(FIXTURES, 'policy-deploy.yaml'), ctx);
    expect(p.ruleCount).toBe(2);
  });
});

describe('identity and rate limit', () => {
  it('looks users up in /etc/passwd and /etc/group', () => {
    const passwd = write('passwd', 'root:x:0:0:root:/root:/bin/bash\ndeploy:x:1500:1600::/srv/deploy:/bin/sh\n');
    const group = write('group', 'root:x:0:\ndeploy:x:1600:\ndocker:x:999:deploy,alice\nadm:x:4:alice\n');
    expect(lookupUser('deploy', { passwd, group })).toEqual({ name: 'deploy', uid: 1500, gid: 1600, groups: [1600, 999], home: '/srv/deploy' });
    expect(lookupUser('1500', { passwd, group })?.name).toBe('deploy');
    expect(lookupUser('4242:4343', { passwd, group })).toMatchObject({ uid: 4242, gid: 4343 });
    expect(lookupUser('nobody-at-all', { passwd, group })).toBeNull();
  });

  it('a token bucket per token id: bursts up to the rate, then Retry-After seconds', () => {
    let now = 0;
    const rl = new RateLimiter(60, () => now);
    for (let i = 0; i < 60; i++) expect(rl.take('a')).toBe(0);
    expect(rl.take('a')).toBe(1);
    expect(rl.take('b')).toBe(0); // another token has its own bucket
    now += 1000;
    expect(rl.take('a')).toBe(0);
    expect(rl.take('a')).toBeGreaterThanOrEqual(1);
  });
});
