import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ExecdClient } from '../client/index.js';
import { UsageError } from './exit.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** Options every command takes (and the program itself, before the command). */
export interface CommonOptions {
  url?: string;
  tokenFile?: string;
  json?: boolean;
  color?: boolean;
}

/**
 * Where the server is and the token to use: --url, else EXECD_URL, else http://127.0.0.1:8080; --token-file,
 * else EXECD_TOKEN_FILE, else EXECD_TOKEN (its first token when it lists several, as the server's does).
 * Never a token on the command line, where ps would show it.
 */
export function clientFrom(opts: CommonOptions, env: NodeJS.ProcessEnv = process.env): ExecdClient {
  const url = opts.url ?? env.EXECD_URL ?? DEFAULT_URL;
  if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`the server URL must start with http:// or https:// (got ${JSON.stringify(url)})`);
  return new ExecdClient({ url, token: tokenFrom(opts, env) });
}

export function tokenFrom(opts: CommonOptions, env: NodeJS.ProcessEnv): string | undefined {
  const file = opts.tokenFile ?? env.EXECD_TOKEN_FILE;
  if (file !== undefined && file !== '') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const token = text.trim();
    if (token === '') throw new UsageError(`the token file ${file} is empty`);
    return token;
  }
  const token = env.EXECD_TOKEN?.split(',')[0]?.trim();
  return token === '' ? undefined : token;
}

/**
 * A command's options merged with its ancestors' (the common options may come before the command's name or
 * after it). Unlike commander's optsWithGlobals, a value given on the command line wins over a default of
 * another level: `execd jobs --no-color` is not undone by the program's own --no-color default (color: true).
 */
export function optionsOf<T>(cmd: Command): T {
  const chain: Command[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) chain.unshift(c);
  const merged: Record<string, unknown> = {};
  const given = new Set<string>();
  for (const c of chain) {
    for (const [key, value] of Object.entries(c.opts())) {
      if (value === undefined) continue;
      const explicit = c.getOptionValueSource(key) !== 'default';
      if (explicit || !given.has(key)) merged[key] = value;
      if (explicit) given.add(key);
    }
  }
  return merged as T;
}
