// One detected stream: pages last, last+step, last+2·step, ... A cursor has asked for everything up to
// (not including) `front`; `marker` is the first page of its newest window: when the stream reaches
// it, the next window goes out before the stream runs off the end (Linux's PG_readahead trick).
import { run } from './base';

export class Cursor {
  /** Next page not asked for yet. */
  front: number;
  marker: number;
  /** The page the stream was detected at (or an earlier stream it continues): pages from here to `last` were walked over. */
  origin: number;

  constructor(
    readonly step: number,
    /** The stream's newest page. */
    public last: number,
    public window: number,
    private readonly minWindow: number,
    private maxWindow: number,
  ) {
    this.front = last + step;
    this.marker = this.front;
    this.origin = last;
  }

  /** 'behind': on the stream from its origin up to its newest page; 'ahead': asked for, not reached yet. */
  whereIs(page: number): 'behind' | 'ahead' | null {
    const k = (page - this.origin) / this.step;
    if (!Number.isInteger(k) || k < 0) return null;
    if ((page - this.last) / this.step <= 0) return 'behind';
    return (page - this.front) / this.step < 0 ? 'ahead' : null;
  }

  /** page lies ahead of the stream's newest page, on its step, at most at `front`. */
  continues(page: number): boolean {
    const ahead = (page - this.last) / this.step;
    return Number.isInteger(ahead) && ahead >= 1 && (page - this.front) / this.step <= 0;
  }

  /** page lies between the newest page and the front (one of our guesses, or the page we wait for). */
  spans(page: number): boolean {
    return (page - this.last) / this.step > 0 && (page - this.front) / this.step < 0;
  }

  /**
   * The stream moved to `page` (which continues it): the pages to ask for now. `fault` when the page
   * was not there: inside the window that means guesses were lost (dropped before use), so the window
   * resets and the smallest window after the page is asked for again (what is still there is dropped
   * by the caller); one fault asks for one small window, so a cache too small for the stream cannot
   * make the guesses multiply.
   */
  advance(page: number, fault = false): number[] {
    this.last = page;
    if (fault && (page - this.front) / this.step < 0) {
      this.window = this.minWindow;
      return run(page + this.step, this.step, Math.min(this.minWindow, (this.front - page) / this.step - 1));
    }
    if ((page - this.front) / this.step >= 0) {
      // The stream outran its window (a fault right past it): bigger windows, starting from here.
      this.grow();
      this.front = page + this.step;
      return this.issue();
    }
    if ((page - this.marker) / this.step >= 0) {
      // The newest window is in use: the guesses pay, so ask for a bigger one ahead.
      this.grow();
      return this.issue();
    }
    return [];
  }

  /** The first window when the stream is detected. */
  start(): number[] {
    return this.issue();
  }

  /** A guess was dropped untouched: back to the smallest window. */
  shrink(): void {
    this.window = this.minWindow;
  }

  /** A new largest window; a larger current one is cut to it. */
  cap(maxWindow: number): void {
    this.maxWindow = maxWindow;
    this.window = Math.min(this.window, maxWindow);
  }

  private grow(): void {
    this.window = Math.min(this.maxWindow, this.window * 2);
  }

  private issue(): number[] {
    const pages = run(this.front, this.step, this.window);
    this.marker = this.front;
    this.front += this.step * this.window;
    return pages;
  }
}
