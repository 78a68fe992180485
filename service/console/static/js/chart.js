// A small inline SVG chart of the runs of a batch: records as bars, duration as a line, oldest on the left.

import { h, s } from './dom.js';
import { number, t, time } from './i18n.js';

const WIDTH = 640;
const HEIGHT = 200;
const PAD = { left: 56, right: 48, top: 12, bottom: 28 };

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= value);
}

function durationMs(run) {
  if (!run.startedAt || !run.finishedAt) return null;
  return Math.max(0, new Date(run.finishedAt) - new Date(run.startedAt));
}

/** `runs` newest first, as the history answers. */
export function runsChart(runs) {
  const points = runs.slice().reverse().map((run) => ({
    run, records: run.recordsSynced || 0, seconds: (durationMs(run) ?? 0) / 1000,
  }));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const maxRecords = niceMax(Math.max(0, ...points.map((p) => p.records)));
  const maxSeconds = niceMax(Math.max(0, ...points.map((p) => p.seconds)));
  const slot = points.length ? plotW / points.length : plotW;
  const y = (value, max) => PAD.top + plotH - (value / max) * plotH;
  const children = [
    s('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: PAD.top + plotH, y2: PAD.top + plotH, stroke: '#d1d9e0' }),
    s('text', { x: PAD.left - 6, y: PAD.top + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#59636e' },
      number(maxRecords)),
    s('text', { x: PAD.left - 6, y: PAD.top + plotH, 'text-anchor': 'end', 'font-size': 10, fill: '#59636e' }, '0'),
    s('text', { x: WIDTH - PAD.right + 6, y: PAD.top + 4, 'font-size': 10, fill: '#9a6700' }, `${maxSeconds}s`),
  ];
  points.forEach((point, index) => {
    const barH = (point.records / maxRecords) * plotH;
    const fill = point.run.status === 'FAILED' ? '#ff8182' : '#54aeff';
    children.push(s('rect', {
      x: PAD.left + index * slot + slot * 0.15, y: PAD.top + plotH - barH, width: Math.max(1, slot * 0.7),
      height: barH, fill, 'data-run-id': point.run.runId,
    }, s('title', {}, `${time(point.run.startedAt)} · ${number(point.records)} · ${point.seconds.toFixed(1)}s`)));
  });
  if (points.length) {
    const path = points.map((point, index) => `${index ? 'L' : 'M'}${(PAD.left + index * slot + slot / 2).toFixed(1)},`
      + `${y(point.seconds, maxSeconds).toFixed(1)}`).join(' ');
    children.push(s('path', { d: path, fill: 'none', stroke: '#bf8700', 'stroke-width': 2 }));
    points.forEach((point, index) => children.push(s('circle', {
      cx: PAD.left + index * slot + slot / 2, cy: y(point.seconds, maxSeconds), r: 3, fill: '#bf8700',
    })));
  }
  return h('div', { class: 'chart' },
    h('div', { class: 'muted' }, t('stats.chartTitle')),
    s('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': t('stats.chartTitle') }, children),
    h('div', { class: 'legend' },
      h('span', {}, h('span', { class: 'swatch records' }), t('stats.records')),
      h('span', {}, h('span', { class: 'swatch duration' }), t('stats.duration'))));
}
