// Drawing at most once per animation frame, on request.

/** Calls `draw` in the next animation frame after `request()`, however many requests came meanwhile. */
export class FrameLoop {
  constructor(draw) {
    this.draw = draw;
    this.handle = 0;
    this.waiters = [];
  }

  request() {
    if (this.handle) return;
    this.handle = requestAnimationFrame(() => {
      this.handle = 0;
      this.draw();
      const waiters = this.waiters;
      this.waiters = [];
      for (const resolve of waiters) resolve();
    });
  }

  /** A promise resolved once the next frame has been drawn. */
  nextFrame() {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.request();
    });
  }
}
