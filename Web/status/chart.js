// A small time-series line chart on <canvas>: fixed time window, y axis from 0 with "nice" ticks,
// time labels, optional shaded ranges (e.g. reconnect storms), gaps where a value is missing.
// Redraws only when given new data or when its box changes size (ResizeObserver, device pixel ratio).

import * as fmt from "./format.js";

function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const exponent = Math.floor(Math.log10(value));
  const base = 10 ** exponent;
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * base) return step * base;
  }
  return 10 * base;
}

function niceBytesCeiling(value) {
  if (!(value > 0)) return 1024;
  let unit = 1;
  while (value / unit >= 1024) unit *= 1024;
  return niceCeiling(value / unit) * unit;
}

export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{unit: string, series: {key: string, label: string, color: string}[],
   *          shadeKey?: string, windowSeconds?: number, minMax?: number}} options
   *   `color` is a CSS custom property name (e.g. "--series-1") read from the canvas's styles.
   */
  constructor(canvas, options) {
    this.canvas = canvas;
    this.options = { windowSeconds: 300, ...options };
    this.samples = [];
    this.draws = 0;
    this.size = { width: 0, height: 0, ratio: 1 };
    if (typeof ResizeObserver === "function") {
      this.observer = new ResizeObserver(() => this.resize());
      this.observer.observe(canvas);
    }
    this.resize();
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(rect.width));
    const height = Math.max(1, Math.round(rect.height));
    if (width === this.size.width && height === this.size.height && ratio === this.size.ratio) return;
    this.size = { width, height, ratio };
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    this.draw();
  }

  /** New data: the status API's history (oldest first, `t` in seconds since the epoch). */
  update(samples) {
    this.samples = samples || [];
    this.draw();
  }

  /** The current value of a series (the newest sample that has one). */
  latest(key) {
    for (let i = this.samples.length - 1; i >= 0; i -= 1) {
      const v = this.samples[i][key];
      if (Number.isFinite(v)) return v;
    }
    return null;
  }

  maxValue() {
    let max = 0;
    for (const sample of this.samples) {
      for (const { key } of this.options.series) {
        const v = sample[key];
        if (Number.isFinite(v) && v > max) max = v;
      }
    }
    return max;
  }

  draw() {
    const { canvas, options, samples } = this;
    const { width, height, ratio } = this.size;
    const ctx = canvas.getContext("2d");
    if (!ctx || width < 10 || height < 10) return;
    const style = getComputedStyle(canvas);
    const color = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    const ink = color("--chart-ink", "#333");
    const grid = color("--chart-grid", "#ddd");
    const shade = color("--chart-shade", "rgba(200,0,0,0.12)");
    const font = `11px ${style.fontFamily || "sans-serif"}`;

    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = font;

    const unit = options.unit;
    const rawMax = Math.max(this.maxValue(), options.minMax ?? 0);
    const top = unit === "bytes" ? niceBytesCeiling(rawMax) : unit === "percent" ? Math.min(1, niceCeiling(Math.max(rawMax, 0.01))) : niceCeiling(rawMax);
    const yLabels = [0, top / 2, top].map((v) => fmt.axis(v, unit));
    const left = Math.ceil(Math.max(...yLabels.map((l) => ctx.measureText(l).width))) + 8;
    const right = 6;
    const topPad = 6;
    const bottom = 18;
    const plotW = Math.max(1, width - left - right);
    const plotH = Math.max(1, height - topPad - bottom);

    const tEnd = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
    const tStart = tEnd - options.windowSeconds;
    const x = (t) => left + ((t - tStart) / options.windowSeconds) * plotW;
    const y = (v) => topPad + plotH - (Math.min(v, top) / top) * plotH;

    // Shaded ranges (one rectangle per run of samples with shadeKey true).
    if (options.shadeKey) {
      ctx.fillStyle = shade;
      let runStart = null;
      for (let i = 0; i <= samples.length; i += 1) {
        const on = i < samples.length && samples[i][options.shadeKey];
        if (on && runStart === null) runStart = samples[i].t - 0.5;
        if (!on && runStart !== null) {
          const runEnd = samples[i - 1].t + 0.5;
          const x0 = Math.max(left, x(runStart));
          ctx.fillRect(x0, topPad, Math.max(1, x(runEnd) - x0), plotH);
          runStart = null;
        }
      }
    }

    // Horizontal grid lines and y labels.
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = ink;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    [0, 0.5, 1].forEach((f, i) => {
      const yy = Math.round(topPad + plotH - f * plotH) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(left + plotW, yy);
      ctx.stroke();
      ctx.fillText(yLabels[i], left - 4, yy);
    });

    // Time labels: "now" at the right, the window's start at the left, whole minutes between where
    // they fit without touching a label already drawn.
    ctx.textBaseline = "alphabetic";
    const minutes = Math.round(options.windowSeconds / 60);
    const drawn = [];
    const label = (text, xx, align) => {
      const w = ctx.measureText(text).width;
      const x0 = align === "left" ? xx : align === "right" ? xx - w : xx - w / 2;
      if (drawn.some(([a, b]) => x0 < b + 8 && x0 + w > a - 8)) return;
      drawn.push([x0, x0 + w]);
      ctx.textAlign = "left";
      ctx.fillText(text, x0, height - 4);
    };
    label("now", left + plotW, "right");
    label(`−${minutes}m`, left, "left");
    for (let m = minutes - 1; m >= 1; m -= 1) label(`−${m}m`, x(tEnd - m * 60), "center");

    // Series.
    ctx.lineJoin = "round";
    ctx.lineWidth = 1.75;
    for (const series of options.series) {
      ctx.strokeStyle = color(series.color, "#06c");
      ctx.beginPath();
      let drawing = false;
      let previousT = null;
      for (const sample of samples) {
        const v = sample[series.key];
        if (sample.t < tStart - 1 || !Number.isFinite(v)) {
          drawing = false;
          continue;
        }
        // A gap of more than 3 s in the samples (node restarted) breaks the line.
        if (previousT !== null && sample.t - previousT > 3) drawing = false;
        previousT = sample.t;
        const px = x(sample.t);
        const py = y(v);
        if (drawing) ctx.lineTo(px, py);
        else ctx.moveTo(px, py);
        drawing = true;
      }
      ctx.stroke();
    }

    this.draws += 1;
    canvas.dataset.draws = String(this.draws);
    canvas.dataset.samples = String(samples.length);
    canvas.dataset.lastT = samples.length ? String(samples[samples.length - 1].t) : "";
  }
}
