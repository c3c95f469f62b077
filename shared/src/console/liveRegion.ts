// A block of lines at the bottom of the terminal, redrawn in place (the round table and the sites' progress),
// with ordinary lines (logs) printed above it. Only on a terminal; elsewhere nothing is drawn.
import { truncateVisible } from './color.ts';

export class LiveRegion {
  private lines: string[] = [];
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, private readonly minIntervalMs = 100) {}

  get active(): boolean {
    return !this.closed && !!this.stream.isTTY;
  }

  private width(): number {
    return Math.max(20, (this.stream.columns || 100) - 1);
  }

  /** Move up over the block and clear it (the cursor ends where the block began). */
  private erase(): string {
    return this.drawn ? `\x1b[${this.drawn}F\x1b[0J` : '';
  }

  private frame(): string {
    const w = this.width();
    const rows = Math.max(1, (this.stream.rows || 40) - 2);
    const shown = this.lines.length > rows ? this.lines.slice(this.lines.length - rows) : this.lines;
    this.drawn = shown.length;
    return shown.map((l) => `${truncateVisible(l, w)}\n`).join('');
  }

  private render = (): void => {
    this.timer = undefined;
    if (!this.active) return;
    this.stream.write(this.erase() + this.frame());
  };

  /** Replace the block (drawn at most every minIntervalMs). */
  set(lines: string[]): void {
    this.lines = lines;
    if (!this.active || this.timer) return;
    this.timer = setTimeout(this.render, this.minIntervalMs);
    this.timer.unref();
  }

  /** Print a line above the block. */
  print(line: string): void {
    if (!this.active) {
      this.stream.write(line.endsWith('\n') ? line : `${line}\n`);
      return;
    }
    this.stream.write(this.erase() + (line.endsWith('\n') ? line : `${line}\n`) + this.frame());
  }

  /** Draw the last state once more and leave it on the screen (or clear it). */
  close(opts: { keep?: boolean } = {}): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.active) this.stream.write(this.erase() + (opts.keep === false ? '' : this.frame()));
    this.drawn = 0;
    this.closed = true;
  }
}
