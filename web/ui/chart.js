// Run durations over time: a bar per run, oldest at the left, coloured and titled by state.
import { h, duration, since } from './dom.js';
import { label } from './states.js';

export function durationChart(runs) {
  const points = runs.filter((r) => r.started_at).map((r) => ({ run: r, ms: since(r.started_at, r.ended_at) }));
  if (points.length === 0) return h('p', { class: 'muted' }, 'No run has started yet.');
  const max = Math.max(...points.map((p) => p.ms), 1);
  const W = 12;
  const H = 80;
  const width = points.length * W;
  const bars = points.map((p, i) => {
    const height = Math.max((p.ms / max) * H, 1);
    const text = `run ${p.run.id}: ${duration(p.ms)}, ${label(p.run.state)}${p.run.ended_at ? '' : ' (so far)'}`;
    return h('svg:a', { href: `#/runs/${p.run.id}`, 'aria-label': text },
      h('svg:rect', { x: i * W + 1, y: H - height, width: W - 2, height, class: `bar st-${p.run.state}` },
        h('svg:title', {}, text)));
  });
  return h('figure', { class: 'chart' },
    h('svg:svg', { width, height: H, viewBox: `0 0 ${width} ${H}`, role: 'img',
      'aria-label': `durations of the last ${points.length} runs, longest ${duration(max)}` }, bars),
    h('figcaption', { class: 'muted' }, `Run durations, oldest at the left; the tallest is ${duration(max)}.`));
}

// What tasks measured, run by run: one line per task and metric, oldest run at the left, each
// point a link to its run. `points` as GET /api/v1/pipelines/{name}/metrics gives them (newest
// first).
export function metricsCharts(points) {
  if (points.length === 0) {
    return h('p', { class: 'muted' }, 'No metrics recorded yet: a task that declares metrics = "file.json" records them when it succeeds.');
  }
  const series = new Map();
  for (const p of [...points].reverse()) {
    for (const [metric, value] of Object.entries(p.metrics)) {
      const key = `${p.task} · ${metric}`;
      if (!series.has(key)) series.set(key, []);
      series.get(key).push({ run: p.run, value, skipped: p.state === 'skipped' });
    }
  }
  const sorted = [...series].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return h('div', { class: 'metrics' }, sorted.map(([key, values]) => lineChart(key, values)));
}

function number(v) {
  return Number.isInteger(v) ? String(v) : Number(v.toPrecision(6)).toString();
}

function lineChart(key, values) {
  const W = Math.max(16, 240 / values.length);  // at least 240 px wide, 16 px per run beyond
  const H = 60;
  const width = values.length * W;
  const min = Math.min(...values.map((v) => v.value));
  const max = Math.max(...values.map((v) => v.value));
  const y = (v) => (max === min ? H / 2 : H - 4 - ((v - min) / (max - min)) * (H - 8));
  const x = (i) => i * W + W / 2;
  const line = values.map((v, i) => `${x(i)},${y(v.value)}`).join(' ');
  const dots = values.map((v, i) => {
    // A gate that did not pass: its numbers, drawn hollow.
    const text = `run ${v.run}: ${key} ${number(v.value)}${v.skipped ? ' (did not pass)' : ''}`;
    return h('svg:a', { href: `#/runs/${v.run}`, 'aria-label': text },
      h('svg:circle', { cx: x(i), cy: y(v.value), r: 3.5, class: v.skipped ? 'dot skipped' : 'dot' },
        h('svg:title', {}, text)));
  });
  const last = values[values.length - 1];
  return h('figure', { class: 'chart metric', dataset: { series: key } },
    h('svg:svg', { width, height: H, viewBox: `0 0 ${width} ${H}`, role: 'img',
      'aria-label': `${key} over the last ${values.length} runs, from ${number(min)} to ${number(max)}` },
    h('svg:polyline', { points: line, class: 'line' }), dots),
    h('figcaption', {}, h('strong', {}, key), ` latest ${number(last.value)} (run ${last.run}); `,
      h('span', { class: 'muted' }, `range ${number(min)} – ${number(max)} over ${values.length} runs`)));
}
