"use strict";
// Line charts drawn as SVG, no library.
//   lineChart(el, {title, xLabel, series: [{key, label, color, dash, points: [[x, y], ...]}]})
// Each series is one <polyline data-series=KEY data-points=JSON>: its points in data units, so a
// test (or a curious user) can read exactly what is drawn. Hovering shows the nearest values.

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

// About n round tick values covering [lo, hi].
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(f => f * mag).find(s => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return {lo: Math.min(lo, ticks[0]), hi: Math.max(hi, ticks[ticks.length - 1]), ticks};
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(+v.toPrecision(4));
}

function lineChart(el, opts) {
  const W = 440, H = 250, m = {l: 54, r: 10, t: 26, b: 34};
  el.textContent = "";
  const series = opts.series.filter(s => s.points.length);
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
                            "aria-label": opts.title || "chart"}, el);
  svgEl("text", {x: m.l, y: 16, class: "chart-title"}, svg).textContent = opts.title || "";
  if (!series.length) {
    svgEl("text", {x: W / 2, y: H / 2, class: "chart-empty", "text-anchor": "middle"}, svg).textContent = "no points yet";
    return svg;
  }
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) for (const [x, y] of s.points) {
    if (x < x0) x0 = x; if (x > x1) x1 = x;
    if (Number.isFinite(y)) { if (y < y0) y0 = y; if (y > y1) y1 = y; }
  }
  const xt = niceTicks(x0, x1, 6), yt = niceTicks(y0, y1, 5);
  const px = x => m.l + (x - xt.lo) / (xt.hi - xt.lo) * (W - m.l - m.r);
  const py = y => H - m.b - (y - yt.lo) / (yt.hi - yt.lo) * (H - m.t - m.b);
  const axes = svgEl("g", {class: "axes"}, svg);
  for (const t of yt.ticks) {
    svgEl("line", {x1: m.l, x2: W - m.r, y1: py(t), y2: py(t), class: "grid"}, axes);
    svgEl("text", {x: m.l - 4, y: py(t) + 3, "text-anchor": "end"}, axes).textContent = fmt(t);
  }
  for (const t of xt.ticks) {
    svgEl("line", {x1: px(t), x2: px(t), y1: m.t, y2: H - m.b, class: "grid"}, axes);
    svgEl("text", {x: px(t), y: H - m.b + 13, "text-anchor": "middle"}, axes).textContent = fmt(t);
  }
  svgEl("text", {x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label"}, axes)
    .textContent = opts.xLabel || "";
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const pts = s.points.filter(p => Number.isFinite(p[1]));
    svgEl("polyline", {points: pts.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" "),
                       fill: "none", stroke: color, "stroke-width": 1.6, "stroke-dasharray": s.dash || "",
                       "data-series": s.key, "data-points": JSON.stringify(s.points)}, svg);
    if (pts.length <= 60) for (const [x, y] of pts)
      svgEl("circle", {cx: px(x), cy: py(y), r: 2, fill: color}, svg);
  });
  // legend, top right
  const legend = svgEl("g", {class: "legend"}, svg);
  let lx = W - m.r;
  for (let i = series.length - 1; i >= 0; i--) {
    const s = series[i], color = s.color || PALETTE[i % PALETTE.length];
    const t = svgEl("text", {x: lx, y: 16, "text-anchor": "end"}, legend);
    t.textContent = s.label;
    lx -= 7 * s.label.length + 4;
    svgEl("line", {x1: lx - 14, x2: lx - 2, y1: 12, y2: 12, stroke: color, "stroke-width": 2.5,
                   "stroke-dasharray": s.dash || ""}, legend);
    lx -= 22;
  }
  // hover: a rule at the nearest x and each series' value there
  const rule = svgEl("line", {y1: m.t, y2: H - m.b, class: "rule", visibility: "hidden"}, svg);
  const tip = svgEl("text", {class: "tip", visibility: "hidden"}, svg);
  svg.addEventListener("mousemove", ev => {
    const box = svg.getBoundingClientRect();
    const x = xt.lo + ((ev.clientX - box.left) * W / box.width - m.l) / (W - m.l - m.r) * (xt.hi - xt.lo);
    const parts = [];
    let best = null;
    for (const s of series) {
      let near = null;
      for (const p of s.points) if (near === null || Math.abs(p[0] - x) < Math.abs(near[0] - x)) near = p;
      if (near) { parts.push(`${s.label} ${fmt(near[1])}`); if (best === null || Math.abs(near[0] - x) < Math.abs(best - x)) best = near[0]; }
    }
    if (best === null) return;
    rule.setAttribute("x1", px(best)); rule.setAttribute("x2", px(best)); rule.setAttribute("visibility", "visible");
    tip.textContent = `${opts.xLabel || "x"} ${fmt(best)}: ${parts.join(", ")}`;
    tip.setAttribute("x", m.l + 4); tip.setAttribute("y", m.t + 12); tip.setAttribute("visibility", "visible");
  });
  svg.addEventListener("mouseleave", () => { rule.setAttribute("visibility", "hidden"); tip.setAttribute("visibility", "hidden"); });
  return svg;
}
