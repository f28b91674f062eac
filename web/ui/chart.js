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
