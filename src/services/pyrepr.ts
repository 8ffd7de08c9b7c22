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

/** Python's repr() of a float, as `timed out after {timeout} seconds` prints it. */
export function pyFloat(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return String(n);
}
