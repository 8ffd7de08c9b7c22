import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config.js';
import { checkNotifyUrl } from '../../../src/notify/allow.js';
import { classifyAddress } from '../../../src/notify/address.js';

const SECRET = { EXECD_TOKEN: 'unit-test-token-0123456789', EXECD_NOTIFY_SECRET: 's'.repeat(32) };
const allowOf = (value: string) => parseConfig({ ...SECRET, EXECD_NOTIFY_ALLOW: value }).notifyAllow;

describe('EXECD_NOTIFY_ALLOW', () => {
  it('parses hosts, *.suffixes, ports, IPv6 literals and http:// entries', () => {
    expect(allowOf('hooks.example.com, http://*.Internal.example:8443,[::1]:9000,10.0.0.5')).toEqual([
      { host: 'hooks.example.com', wildcard: false, port: null, http: false },
      { host: '.internal.example', wildcard: true, port: 8443, http: true },
      { host: '[::1]', wildcard: false, port: 9000, http: false },
      { host: '10.0.0.5', wildcard: false, port: null, http: false },
    ]);
  });

  it('refuses malformed entries, a wildcard IP, and a list without EXECD_NOTIFY_SECRET', () => {
    for (const bad of ['https://a.example/path', 'a.example:99999', '*.10.0.0.1', 'user@a.example', 'ftp://a.example', '*']) {
      expect(() => allowOf(bad), bad).toThrow(/EXECD_NOTIFY_ALLOW entry/);
    }
    expect(() => parseConfig({ EXECD_TOKEN: SECRET.EXECD_TOKEN, EXECD_NOTIFY_ALLOW: 'a.example' })).toThrow(/EXECD_NOTIFY_SECRET: required/);
    expect(() => parseConfig({ ...SECRET, EXECD_NOTIFY_SECRET: 'short' })).toThrow(/at least 32/);
    expect(() => parseConfig({ ...SECRET, EXECD_NOTIFY_SECRET: 'short' })).not.toThrow(/short"/); // a secret is never echoed
  });
});

describe('checkNotifyUrl', () => {
  const allow = allowOf('hooks.example.com,*.corp.example:8443,http://127.0.0.1');

  it('admits a listed host (any port without one in the entry), a subdomain of a *.suffix on its port', () => {
    expect(checkNotifyUrl('https://hooks.example.com/a?b=1', allow)).toMatchObject({ ok: true, target: { host: 'hooks.example.com', port: 443, listed: true } });
    expect(checkNotifyUrl('https://hooks.example.com:444/', allow)).toMatchObject({ ok: true, target: { port: 444 } });
    expect(checkNotifyUrl('https://a.b.corp.example:8443/', allow)).toMatchObject({ ok: true, target: { listed: false } });
    expect(checkNotifyUrl('http://127.0.0.1:9/x', allow)).toMatchObject({ ok: true, target: { host: '127.0.0.1', port: 9, listed: true } });
  });

  it('refuses other hosts, ports, the bare suffix, look-alikes and http:// without an http:// entry, naming the setting', () => {
    for (const url of [
      'https://evil.example.com/', 'https://hooks.example.com.evil.net/', 'https://corp.example:8443/', 'https://a.corp.example/',
      'https://xcorp.example:8443/', 'http://hooks.example.com/', 'https://127.0.0.2/', 'https://[::1]/',
    ]) {
      const v = checkNotifyUrl(url, allow);
      expect(v.ok, url).toBe(false);
      if (!v.ok) expect(v.reason).toMatch(/EXECD_NOTIFY_ALLOW/);
    }
    expect(checkNotifyUrl('https://hooks.example.com/', [])).toEqual({ ok: false, reason: expect.stringMatching(/EXECD_NOTIFY_ALLOW is empty/) });
  });
});

describe('classifyAddress', () => {
  it('sorts addresses into public, internal (listed hosts only) and never', () => {
    for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '172.32.0.1']) expect(classifyAddress(a), a).toBe('public');
    for (const a of [
      '127.0.0.1', '127.8.9.10', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '::1', 'fe80::1', 'fd00::1',
      '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:169.254.169.254', '64:ff9b::a9fe:a9fe',
    ]) {
      expect(classifyAddress(a), a).toBe('internal');
    }
    for (const a of ['0.0.0.0', '::', '224.0.0.1', '255.255.255.255', 'ff02::1', 'not-an-ip', '::ffff:0.0.0.0']) expect(classifyAddress(a), a).toBe('never');
  });
});
