import { readFileSync, statSync } from 'node:fs';
import { ConfigError } from '../config.js';

/**
 * Who commands run as. When the server runs as root, a command runs as the
 * user its policy rule names (`runAs`) or EXECD_RUN_AS: the spawn sets that
 * uid and gid. Node's child_process cannot set supplementary groups: libuv
 * calls setgroups(0, NULL) when it changes uid/gid, so the child has no
 * supplementary groups at all (not root's, and not the user's from
 * /etc/group either). `groups` below is informational.
 */
export interface RunAsUser {
  name: string;
  uid: number;
  gid: number;
  /** The user's groups per /etc/group (primary first); not applied to the child, see above. */
  groups: number[];
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function readLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n');
  } catch {
    return [];
  }
}

function passwd(path = '/etc/passwd'): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of readLines(path)) {
    if (line === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 7 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    out.push({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! });
  }
  return out;
}

function supplementaryGroups(name: string, primary: number, path = '/etc/group'): number[] {
  const groups = [primary];
  for (const line of readLines(path)) {
    const f = line.split(':');
    if (f.length < 4 || !/^\d+$/.test(f[2]!)) continue;
    const gid = Number(f[2]);
    if (f[3]!.split(',').includes(name) && !groups.includes(gid)) groups.push(gid);
  }
  return groups;
}

/**
 * A user by name (or numeric uid) from /etc/passwd, with its groups from
 * /etc/group. Returns null when there is no such user. A numeric uid absent
 * from /etc/passwd is accepted as `uid:uid` only in the `uid:gid` form.
 */
export function lookupUser(spec: string, files: { passwd?: string; group?: string } = {}): RunAsUser | null {
  const pair = /^(\d+):(\d+)$/.exec(spec);
  const entries = passwd(files.passwd);
  if (pair) {
    const uid = Number(pair[1]);
    const gid = Number(pair[2]);
    const known = entries.find((e) => e.uid === uid);
    return { name: known?.name ?? String(uid), uid, gid, groups: [gid], home: known?.home ?? '/' };
  }
  const e = /^\d+$/.test(spec) ? entries.find((p) => p.uid === Number(spec)) : entries.find((p) => p.name === spec);
  if (!e) return null;
  return { name: e.name, uid: e.uid, gid: e.gid, groups: supplementaryGroups(e.name, e.gid, files.group), home: e.home };
}

export { SERVER_GID, SERVER_UID } from '../runner/ran-as.js';

/** The server's own identity. */
export function serverUser(): RunAsUser {
  const uid = process.getuid!();
  const gid = process.getgid!();
  const known = passwd().find((e) => e.uid === uid);
  return { name: known?.name ?? String(uid), uid, gid, groups: process.getgroups!(), home: known?.home ?? '/' };
}

export const isRoot = (): boolean => process.geteuid!() === 0;

/**
 * Resolve a run-as setting (EXECD_RUN_AS or a policy rule's runAs). Throws a
 * ConfigError when the user does not exist, or when a non-root server is
 * asked to become someone else (it could not).
 */
export function resolveRunAs(spec: string, where: string): RunAsUser {
  const user = lookupUser(spec);
  if (!user) throw new ConfigError(`${where}: no user "${spec}" in /etc/passwd`);
  if (!isRoot() && (user.uid !== process.getuid!() || user.gid !== process.getgid!())) {
    throw new ConfigError(`${where}: running commands as "${spec}" needs a server started as root (this one runs as uid ${process.getuid!()})`);
  }
  return user;
}

/** The user's home when it is a directory, else "/": the cwd of a command that gives none. */
export function usableHome(user: RunAsUser): string {
  try {
    if (user.home && statSync(user.home).isDirectory()) return user.home;
  } catch {
    // missing (nobody's /nonexistent)
  }
  return '/';
}
