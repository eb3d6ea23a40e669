// charts.js: small bar charts drawn as inline SVG, with a text
// alternative (a <title> and a hidden table) for screen readers.

import { el } from './ui.js';

const NS = 'http://www.w3.org/2000/svg';
function svgEl(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

/**
 * barChart draws series (arrays of numbers, stacked) over labels and
 * returns a figure. format turns a value into text.
 */
export function barChart({ title, labels, series, format = String, classes = ['bar', 'bar2'], minMax = 1, integer = false }) {
  const W = 400, H = 220, left = 56, bottom = 28, top = 12;
  const totals = labels.map((_, i) => series.reduce((s, ser) => s + (ser.values[i] || 0), 0));
  let max = Math.max(minMax, ...totals);
  // Counts get whole-number gridlines: the half-way line must be whole too.
  if (integer) max = Math.ceil(max / 2) * 2;
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  svg.append(svgEl('title', {}, title));
  const plotH = H - bottom - top;
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH * (1 - f);
    svg.append(svgEl('line', { x1: left, x2: W, y1: y, y2: y, class: 'axis' }));
    svg.append(svgEl('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, format(max * f)));
  }
  const step = (W - left) / labels.length;
  const bw = Math.max(4, step * 0.6);
  labels.forEach((label, i) => {
    let y = top + plotH;
    series.forEach((ser, k) => {
      const h = plotH * (ser.values[i] || 0) / max;
      y -= h;
      if (h > 0) {
        const r = svgEl('rect', { x: left + i * step + (step - bw) / 2, y, width: bw, height: h, class: classes[k % classes.length] });
        r.append(svgEl('title', {}, `${label} · ${ser.name}: ${format(ser.values[i])}`));
        svg.append(r);
      }
    });
    if (labels.length <= 8 || i % 2 === 0) svg.append(svgEl('text', { x: left + i * step + step / 2, y: H - 8, 'text-anchor': 'middle' }, label));
  });
  const table = el('table', { class: 'visually-hidden' },
    el('caption', {}, title),
    el('tr', {}, el('th', {}, ''), series.map((s) => el('th', {}, s.name))),
    labels.map((l, i) => el('tr', {}, el('th', {}, l), series.map((s) => el('td', {}, format(s.values[i]))))));
  const legend = series.length > 1
    ? el('p', { class: 'small muted' }, series.map((s, k) => el('span', { class: 'legend ' + classes[k % classes.length] }, s.name)))
    : null;
  return el('figure', { class: 'figure' }, svg, legend, table);
}
