import { constants as osConstants } from 'node:os';

/** Python's repr() of a str, for error messages worded as CPython words them. */
export function pyReprStr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += '\\' + quote;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || cp === 0x7f) out += '\\x' + cp.toString(16).padStart(2, '0');
    else if (cp >= 0x80 && cp < 0xa0) out += '\\x' + cp.toString(16).padStart(2, '0');
    else if (cp >= 0xd800 && cp <= 0xdfff) out += '\\u' + cp.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + quote;
}

/** Python's repr() of a str or a list of str. */
export function pyRepr(value: string | string[]): string {
  return Array.isArray(value) ? `[${value.map(pyReprStr).join(', ')}]` : pyReprStr(value);
}

/** Python's str() of a str (itself) or of a list of str (its repr), as `'%s' % cmd` prints it. */
export function pyStr(value: string | string[]): string {
  return Array.isArray(value) ? pyRepr(value) : value;
}

/**
 * How Python prints a number it parsed from a JSON body, as `timed out after
 * {timeout} seconds` does. JSON cannot tell `2` from `2.0` and JavaScript
 * writes integral values below 1e21 as integers, which Python reads as int:
 * those print as ints (`2`). Anything else prints as repr(float): the
 * shortest round-tripping digits (the same digits JavaScript picks), in fixed
 * notation for exponents -4..15 and otherwise as `1e-05` / `1.5e+16`.
 */
export function pyFloat(n: number): string {
  if (!Number.isFinite(n)) return Number.isNaN(n) ? 'nan' : n > 0 ? 'inf' : '-inf';
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return String(n);
  const [mantissa, expText] = n.toExponential().split('e') as [string, string];
  const exp = Number(expText);
  if (exp >= -4 && exp < 16) {
    const fixed = String(n); // JavaScript uses fixed notation in this whole range
    return fixed.includes('.') ? fixed : `${fixed}.0`;
  }
  const sign = exp < 0 ? '-' : '+';
  return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
}

let signalNames: Map<number, string> | undefined;

/**
 * The names Python's signal.Signals enum gives to signal numbers on this
 * platform: of several aliases the alphabetically first wins (SIGABRT over
 * SIGIOT, SIGIO over SIGPOLL), as Enum._convert_ sorts them.
 */
function pySignalNames(): Map<number, string> {
  if (signalNames) return signalNames;
  const map = new Map<number, string>();
  const entries = Object.entries(osConstants.signals as Record<string, number>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, num] of entries) if (!map.has(num)) map.set(num, name);
  if (process.platform === 'linux') {
    // glibc's real-time range; Python names only its ends.
    map.set(34, 'SIGRTMIN');
    map.set(64, 'SIGRTMAX');
  }
  signalNames = map;
  return map;
}

/** Python's repr() of signal.Signals(num), e.g. `<Signals.SIGKILL: 9>`; undefined when Python has no such member. */
export function pySignalRepr(num: number): string | undefined {
  const name = pySignalNames().get(num);
  return name === undefined ? undefined : `<Signals.${name}: ${num}>`;
}
