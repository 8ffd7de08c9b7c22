/**
 * Glob patterns for the command policy, matched without backtracking.
 *
 *   *        any run of characters (including none, including "/")
 *   ?        any one character
 *   [a-z0-9] one character of the class; [!…] or [^…] negates it
 *   \x       the character x itself
 *
 * A pattern compiles to a list of tokens read as a Thompson NFA; matching
 * keeps the set of positions the pattern could be at and advances all of them
 * one input character at a time. No state is ever revisited for the same
 * input position, so a match costs O(input length × pattern length) whatever
 * the pattern: there is no ReDoS, unlike a backtracking RegExp. Patterns are
 * anchored (the whole string must match) and work on Unicode code points.
 */

type Token =
  | { kind: 'lit'; cp: number }
  | { kind: 'any' }
  | { kind: 'star' }
  | { kind: 'class'; ranges: Array<[number, number]>; negate: boolean };

export const MAX_GLOB_LENGTH = 1024;

export class GlobSyntaxError extends Error {
  override name = 'GlobSyntaxError';
}

export interface Glob {
  readonly source: string;
  /** True when the pattern has no wildcard: it matches exactly its text. */
  readonly literal: boolean;
  matches(input: string): boolean;
}

function parse(source: string): Token[] {
  if (source.length > MAX_GLOB_LENGTH) throw new GlobSyntaxError(`pattern longer than ${MAX_GLOB_LENGTH} characters`);
  const cps = Array.from(source, (c) => c.codePointAt(0)!);
  const tokens: Token[] = [];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i]!;
    if (c === 0x2a /* * */) {
      if (tokens[tokens.length - 1]?.kind !== 'star') tokens.push({ kind: 'star' }); // ** is *
    } else if (c === 0x3f /* ? */) {
      tokens.push({ kind: 'any' });
    } else if (c === 0x5c /* \ */) {
      if (i + 1 >= cps.length) throw new GlobSyntaxError(`pattern ${JSON.stringify(source)} ends with a lone backslash`);
      tokens.push({ kind: 'lit', cp: cps[++i]! });
    } else if (c === 0x5b /* [ */) {
      let j = i + 1;
      let negate = false;
      if (cps[j] === 0x21 || cps[j] === 0x5e) {
        negate = true;
        j++;
      }
      const ranges: Array<[number, number]> = [];
      let first = true;
      while (j < cps.length && (cps[j] !== 0x5d || first)) {
        let lo = cps[j]!;
        if (lo === 0x5c && j + 1 < cps.length) lo = cps[++j]!;
        let hi = lo;
        if (cps[j + 1] === 0x2d /* - */ && j + 2 < cps.length && cps[j + 2] !== 0x5d) {
          hi = cps[j + 2]!;
          if (hi === 0x5c && j + 3 < cps.length) {
            hi = cps[j + 3]!;
            j++;
          }
          j += 2;
          if (hi < lo) throw new GlobSyntaxError(`pattern ${JSON.stringify(source)} has a reversed range`);
        }
        ranges.push([lo, hi]);
        first = false;
        j++;
      }
      if (j >= cps.length) throw new GlobSyntaxError(`pattern ${JSON.stringify(source)} has an unclosed "["`);
      tokens.push({ kind: 'class', ranges, negate });
      i = j;
    } else {
      tokens.push({ kind: 'lit', cp: c });
    }
  }
  return tokens;
}

function step(t: Token, cp: number): boolean {
  switch (t.kind) {
    case 'lit':
      return t.cp === cp;
    case 'any':
      return true;
    case 'star':
      return true;
    case 'class': {
      const inside = t.ranges.some(([lo, hi]) => cp >= lo && cp <= hi);
      return inside !== t.negate;
    }
  }
}

/** Compile a glob; throws GlobSyntaxError for a malformed one. */
export function compileGlob(source: string): Glob {
  const tokens = parse(source);
  const n = tokens.length;
  const literal = tokens.every((t) => t.kind === 'lit');
  const text = literal ? String.fromCodePoint(...tokens.map((t) => (t as { cp: number }).cp)) : '';

  // Positions reachable without input from `i` join the set of generation `gen` (a star may match nothing).
  const add = (mark: Int32Array, gen: number, list: number[], i: number) => {
    while (i <= n && mark[i] !== gen) {
      mark[i] = gen;
      list.push(i);
      if (i < n && tokens[i]!.kind === 'star') i++;
      else break;
    }
  };

  return {
    source,
    literal,
    matches(input: string): boolean {
      if (literal) return input === text;
      const mark = new Int32Array(n + 1).fill(-1);
      let gen = 0;
      let list: number[] = [];
      add(mark, gen, list, 0);
      for (const ch of input) {
        const cp = ch.codePointAt(0)!;
        const next: number[] = [];
        gen++;
        for (const i of list) {
          if (i === n) continue;
          const t = tokens[i]!;
          if (!step(t, cp)) continue;
          add(mark, gen, next, t.kind === 'star' ? i : i + 1); // a star consumes and stays
        }
        if (next.length === 0) return false;
        list = next;
      }
      return mark[n] === gen;
    },
  };
}
