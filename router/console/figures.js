"use strict";
// Figures as the console's pages show them: durations as text, series as line charts on
// <canvas>. Shared by the live console and the planning page, so both read alike.

const CHART_GRID = "#223040";
const CHART_INK = "#8b9bab";

function seconds(v) {
  if (v === null || v === undefined) return "–";
  if (v < 60) return v.toFixed(1) + " s";
  if (v < 3600) return (v / 60).toFixed(1) + " min";
  return (v / 3600).toFixed(1) + " h";
}

// The smallest round number (1, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) at least `value`.
function roundUp(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 3, 4, 5, 6, 8, 10].find((m) => m * power >= value * 0.999999) * power;
}

// Draw `series` on `canvas`, sized to its CSS box.
// A series: {values, color, label?, offset = 0 (the slot of values[0]), dash? ([on, off]
// pixels), step? (each value spans its whole slot)}; a null value leaves a gap.
// Options: {points (slots on the x axis; default: the longest series), max (default: the
// largest value and a tenth, rounded up so the four grid lines fall on round figures),
// format (y labels), ticks: [{at, text}] (x labels with a faint
// line), markers: [{at, text}] (a bright vertical line), levels: [{value, text}] (a dashed
// horizontal line)}. Value i sits in the middle of slot i; `at` is a slot boundary (0 to
// points). Series with a label get a legend above the plot.
function drawChart(canvas, series, options = {}) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  if (canvas.width !== w * ratio || canvas.height !== h * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const labelled = series.filter((s) => s.label);
  const left = 34, bottom = h - 16, top = labelled.length ? 24 : 8, right = w - 6;
  const points = options.points || Math.max(1, ...series.map((s) => (s.offset || 0) + s.values.length));
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const max = options.max || 4 * roundUp((Math.max(1, ...all, ...(options.levels || []).map((l) => l.value)) * 1.1) / 4);
  const format = options.format || ((v) => (Number.isInteger(v) || v >= 10 ? String(Math.round(v)) : v.toFixed(1)));
  const slot = (right - left) / points;
  const xAt = (at) => left + at * slot;
  const yOf = (v) => bottom - ((bottom - top) * Math.min(v, max)) / max;
  ctx.font = "10px system-ui";
  ctx.lineWidth = 1;
  ctx.strokeStyle = CHART_GRID; ctx.fillStyle = CHART_INK;
  for (let i = 0; i <= 4; i++) {
    const y = bottom - ((bottom - top) * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
    ctx.fillText(format((max * i) / 4), 2, y + 3);
  }
  for (const tick of options.ticks || []) {
    const x = xAt(tick.at);
    if (tick.at > 0 && tick.at < points) {
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
    }
    const width = ctx.measureText(tick.text).width;
    ctx.fillText(tick.text, Math.min(Math.max(x - width / 2, left), w - width - 2), h - 3);
  }
  for (const level of options.levels || []) {
    const y = yOf(level.value);
    ctx.strokeStyle = level.color || CHART_INK; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
    ctx.setLineDash([]);
    if (level.text) { ctx.fillStyle = level.color || CHART_INK; ctx.fillText(level.text, left + 4, y - 4); }
  }
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let drawing = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { drawing = false; return; }
      const at = (s.offset || 0) + i, y = yOf(v);
      const x = s.step ? xAt(at) : xAt(at + 0.5);
      if (drawing) ctx.lineTo(x, y); else { ctx.moveTo(x, y); drawing = true; }
      if (s.step) ctx.lineTo(xAt(at + 1), y);
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
  for (const marker of options.markers || []) {
    const x = xAt(marker.at);
    ctx.strokeStyle = "#e6edf3"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
    ctx.fillStyle = "#e6edf3";
    ctx.fillText(marker.text, x + 4, top + 10);
  }
  let x = left;
  ctx.font = "11px system-ui";
  for (const s of labelled) {
    ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.setLineDash(s.dash || []);
    ctx.beginPath(); ctx.moveTo(x, 10); ctx.lineTo(x + 18, 10); ctx.stroke();
    ctx.fillStyle = "#e6edf3";
    ctx.fillText(s.label, x + 23, 14);
    x += 23 + ctx.measureText(s.label).width + 16;
  }
  ctx.setLineDash([]);
}
