import type { CommonOptions } from './settings.js';

/** How a command prints: JSON for scripts (--json), tables and colors on a terminal, plain text when piped. */
export interface Printer {
  json: boolean;
  color: boolean;
}

export function printerFor(opts: CommonOptions, out: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): Printer {
  const color = opts.color !== false && out.isTTY === true && env.NO_COLOR === undefined && env.TERM !== 'dumb';
  return { json: opts.json === true, color };
}

const SGR = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, blue: 34, cyan: 36 } as const;
export type Style = keyof typeof SGR;

export const paint = (p: Printer, style: Style, text: string): string => (p.color ? `\x1b[${SGR[style]}m${text}\x1b[0m` : text);

const STATE_STYLE: Record<string, Style> = {
  scheduled: 'cyan', queued: 'dim', running: 'blue', succeeded: 'green', failed: 'red', timed_out: 'yellow', canceled: 'yellow', lost: 'red',
};
export const state = (p: Printer, s: string): string => paint(p, STATE_STYLE[s] ?? 'bold', s);

/** Write text to stdout (a JSON value is one line and a newline). */
export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}
export const printJson = (value: unknown): void => print(JSON.stringify(value));

// eslint-disable-next-line no-control-regex
const visibleLength = (s: string): number => s.replace(/\x1b\[[0-9;]*m/g, '').length;

/** Columns aligned with two spaces; the header bold on a terminal. The last column is never padded. */
export function table(p: Printer, headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - visibleLength(c))))
      .join('  ')
      .trimEnd();
  return [paint(p, 'bold', line(headers)), ...rows.map(line)].join('\n');
}

/** `key  value` lines, keys aligned. */
export function fields(p: Printer, entries: [string, unknown][]): string {
  const width = Math.max(...entries.map(([k]) => k.length));
  return entries
    .map(([k, v]) => `${paint(p, 'dim', k.padEnd(width))}  ${v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join('\n');
}

/** A command line for a table cell: argv quoted where needed, or the shell command. */
export function commandLine(spec: { argv?: string[]; command?: string }, max = 60): string {
  const text = spec.command ?? (spec.argv ?? []).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Bytes as 1.2K, 35M… */
export function size(n: number): string {
  const units = ['', 'K', 'M', 'G', 'T'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? String(n) : `${n.toFixed(n < 10 ? 1 : 0)}${units[i]}`;
}

/** Wait until stdout or stderr has taken the bytes (backpressure through a pipe). */
export function write(out: NodeJS.WriteStream, data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => out.write(data, (err) => (err ? reject(err) : resolve())));
}
