import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { SearchAddon } from '@xterm/addon-search';
import { ChunkHistory, WriteQueue } from './write-queue';
import type { StreamName } from './tail';

export type View = 'both' | 'stdout' | 'stderr';

/** Text of ours for the terminal, with any control character (an escape sequence) turned into a space. */
const printable = (text: string): string => Array.from(text, (c) => (c < ' ' || c === '\x7f' ? ' ' : c)).join('');

/**
 * OSC sequences a job's output must not act on: window title (0, 1, 2), the cwd report (7), hyperlinks (8,
 * which xterm would open on a click), palette and colors (4, 10-19, 104-119: the view keeps its theme),
 * the clipboard (52), and iTerm2's extensions (1337: files, notifications). Each is swallowed.
 */
const SWALLOWED_OSC = [
  0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 46, 50, 51, 52,
  104, 105, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 133, 777, 1337,
];

/** Where an interactive terminal's keystrokes and window size go (a tty job's WebSocket). */
export interface TerminalInput {
  /** Keystrokes (and xterm's answers to the program's terminal queries), as text. */
  data(text: string): void;
  /** The terminal's size in cells, after a fit changed it (debounced). */
  resize(cols: number, rows: number): void;
}

/** How long a run of window resizes settles before the new size is sent (a drag sends dozens). */
export const RESIZE_DEBOUNCE_MS = 150;

/**
 * A terminal that shows a job's output as a terminal would (colors, carriage-return progress bars).
 * Bytes are queued and handed to xterm.js a bounded batch at a time (WriteQueue), so a flood of output
 * never blocks the page; scrollback is bounded. Read-only unless `interactive()` is called (a job on a
 * pseudo-terminal, docs/tty.md): until then nothing typed here goes anywhere, and xterm's answers to terminal
 * queries are dropped.
 */
export class TerminalView {
  readonly term: Terminal;
  private readonly fit = new FitAddon();
  private readonly search = new SearchAddon();
  private readonly queue: WriteQueue;
  private readonly history = new ChunkHistory(4 * 1024 * 1024);
  private view: View = 'both';
  follow = true;
  private readonly resize = () => this.fitNow();
  private resizeTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * `tty`: the output comes from a pseudo-terminal, whose line discipline already turns \n into \r\n (and a
   * full-screen program's bare \n means "down one line", not "new line"), so no conversion.
   */
  constructor(host: HTMLElement, scrollback = 5000, tty = false) {
    this.term = new Terminal({
      convertEol: !tty, // pipes carry \n alone; a terminal's line discipline would add the \r
      disableStdin: true,
      scrollback,
      cursorBlink: false,
      cursorStyle: 'underline',
      cursorInactiveStyle: 'none',
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
      fontSize: 13,
      linkHandler: { activate: () => undefined, allowNonHttpProtocols: false },
      theme: { background: '#0d1117', foreground: '#d6dde6' },
    });
    for (const id of SWALLOWED_OSC) this.term.parser.registerOscHandler(id, () => true);
    this.term.loadAddon(this.fit);
    this.term.loadAddon(this.search);
    this.term.open(host);
    this.fitNow();
    addEventListener('resize', this.resize);
    this.queue = new WriteQueue((data, done) => {
      this.term.write(data, () => {
        if (this.follow) this.term.scrollToBottom();
        done();
      });
    }, (cb) => setTimeout(cb, 0)); // a task per batch: input and rendering run between them
  }

  /**
   * Make the terminal a tty job's keyboard and screen: what is typed (and pasted) goes to `input.data`, and each
   * change of size the fit makes (the window resized) to `input.resize`, debounced. Output stays rendered by
   * xterm only, with the same OSC sequences swallowed. Mouse reports in X10 mode (xterm's onBinary) are not sent.
   */
  interactive(input: TerminalInput): void {
    this.term.options.disableStdin = false;
    this.term.options.cursorBlink = true;
    this.term.options.cursorStyle = 'block';
    this.term.options.cursorInactiveStyle = 'outline';
    this.term.onData((text) => input.data(text));
    this.term.onResize(({ cols, rows }) => {
      if (this.resizeTimer !== null) clearTimeout(this.resizeTimer);
      this.resizeTimer = setTimeout(() => {
        this.resizeTimer = null;
        input.resize(cols, rows);
      }, RESIZE_DEBOUNCE_MS);
    });
  }

  /** Back to read-only (the job ended): keys go nowhere, the cursor stops blinking. */
  endInput(): void {
    this.term.options.disableStdin = true;
    this.term.options.cursorBlink = false;
    this.term.blur();
  }

  /** The terminal's size in cells. */
  get size(): { cols: number; rows: number } {
    return { cols: this.term.cols, rows: this.term.rows };
  }

  focus(): void {
    this.term.focus();
  }

  /** Output of a stream: shown when the view includes it, and kept (bounded) for a switch of view. */
  output(stream: StreamName, bytes: Uint8Array): void {
    this.history.push(stream, bytes);
    if (this.view === 'both' || this.view === stream) this.queue.push(bytes);
  }

  /** A line of ours in the output (a gap, a reconnect): inverse video, on a line of its own. */
  marker(text: string, stream?: StreamName): void {
    const bytes = new TextEncoder().encode(`\x1b[0m\r\n\x1b[7m ${printable(text)} \x1b[0m\r\n`);
    this.history.push(stream ?? 'marker', bytes);
    if (stream === undefined || this.view === 'both' || this.view === stream) this.queue.push(bytes);
  }

  setView(view: View): void {
    if (view === this.view) return;
    this.view = view;
    this.queue.clear();
    this.term.reset();
    for (const [stream, bytes] of this.history.entries()) {
      if (view === 'both' || stream === view || stream === 'marker') this.queue.push(bytes);
    }
  }

  setFollow(on: boolean): void {
    this.follow = on;
    if (on) this.term.scrollToBottom();
  }

  find(text: string, backwards = false): boolean {
    if (text === '') {
      this.search.clearDecorations();
      return false;
    }
    return backwards ? this.search.findPrevious(text) : this.search.findNext(text);
  }

  /** The text of the terminal's buffer (scrollback and screen), line by line: what a user can read and copy. */
  text(): string {
    const buf = this.term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) {
      const line = buf.getLine(i);
      if (!line) continue;
      const s = line.translateToString(true);
      if (line.isWrapped && lines.length > 0) lines[lines.length - 1] += s;
      else lines.push(s);
    }
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines.join('\n');
  }

  /** The last line with text (cheap: what `tail -n 1` would show of the view). */
  lastLine(): string {
    const buf = this.term.buffer.active;
    for (let i = buf.length - 1; i >= 0; i--) {
      const s = buf.getLine(i)?.translateToString(true) ?? '';
      if (s !== '') return s;
    }
    return '';
  }

  /** Bytes waiting to be drawn (the view is behind the stream by this much); 0 once everything received is drawn. */
  get backlog(): number {
    return this.queue.pending + (this.queue.busy ? 1 : 0);
  }

  get skipped(): number {
    return this.queue.skipped;
  }

  fitNow(): void {
    try {
      this.fit.fit();
    } catch {
      /* not laid out yet */
    }
  }

  dispose(): void {
    removeEventListener('resize', this.resize);
    if (this.resizeTimer !== null) clearTimeout(this.resizeTimer);
    this.queue.clear();
    this.term.dispose();
  }
}
